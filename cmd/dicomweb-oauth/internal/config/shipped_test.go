package config

import (
	"path/filepath"
	"testing"
)

// TestShippedConfigsParse loads every service configuration shipped with the
// project, with the environment variables they reference set.
func TestShippedConfigsParse(t *testing.T) {
	env := map[string]string{
		"AZURE_TENANT_ID":    "00000000-0000-0000-0000-000000000000",
		"AZURE_CLIENT_ID":    "11111111-1111-1111-1111-111111111111",
		"KEYCLOAK_HOST":      "keycloak.example.test",
		"KEYCLOAK_CLIENT_ID": "orthanc-egress",
	}
	saved := lookupEnv
	lookupEnv = func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	t.Cleanup(func() { lookupEnv = saved })

	root := filepath.Join("..", "..", "..", "..")
	var files []string
	for _, pattern := range []string{"envoy/dicomweb-oauth.yaml", "deploy/*/dicomweb-oauth.yaml"} {
		matches, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, matches...)
	}
	if len(files) == 0 {
		t.Fatal("no shipped service configuration found")
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
}
