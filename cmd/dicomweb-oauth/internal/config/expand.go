package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// lookupEnv is os.LookupEnv, replaced in tests.
var lookupEnv = os.LookupEnv

// expandEnv replaces ${VAR} with the variable's value and ${VAR:-default}
// with the value, or default when the variable is unset or empty. $$ is a
// literal $. Any other $ is kept as it is, so secrets that contain $ need no
// escaping unless followed by {.
func expandEnv(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}

	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				// The value is not quoted, because it may be a secret.
				return "", errors.New("unterminated ${; close it with }, or write $$ for a literal $")
			}
			value, err := resolveVar(s[i+2 : i+2+end])
			if err != nil {
				return "", err
			}
			b.WriteString(value)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func resolveVar(expr string) (string, error) {
	name, fallback, hasDefault := strings.Cut(expr, ":-")
	if !validVarName(name) {
		// The name is not quoted, because it may be part of a secret.
		return "", errors.New("invalid environment variable name in ${...}; " +
			"a name has letters, digits and _, and does not start with a digit")
	}
	value, set := lookupEnv(name)
	if hasDefault && value == "" {
		return fallback, nil
	}
	if !set {
		return "", fmt.Errorf("environment variable %s is not set; set it or write ${%s:-default}", name, name)
	}
	return value, nil
}

func validVarName(name string) bool {
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for _, r := range name {
		ok := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}
