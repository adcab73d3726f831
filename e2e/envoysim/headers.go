package envoysim

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// HeaderField is one header entry. Keys are lower case, as in Envoy's
// header maps.
type HeaderField struct {
	Key, Value string
}

// HeaderMap is an ordered header map that may hold a key more than once.
type HeaderMap []HeaderField

// Values returns every value of key, in order.
func (m HeaderMap) Values(key string) []string {
	var out []string
	for _, f := range m {
		if f.Key == key {
			out = append(out, f.Value)
		}
	}
	return out
}

// Has reports whether m holds key at least once.
func (m HeaderMap) Has(key string) bool {
	return len(m.Values(key)) > 0
}

// first returns the first value of key, or "".
func (m HeaderMap) first(key string) string {
	for _, f := range m {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// Set replaces every value of key with one value, like Envoy's setCopy.
func (m *HeaderMap) Set(key, value string) {
	m.Remove(key)
	m.Add(key, value)
}

// Add appends one more entry for key, like Envoy's addCopy.
func (m *HeaderMap) Add(key, value string) {
	*m = append(*m, HeaderField{key, value})
}

// join appends value to the first entry of key with ",", or adds the key
// when it is absent, like Envoy's appendCopy.
func (m *HeaderMap) join(key, value string) {
	for i, f := range *m {
		if f.Key == key {
			(*m)[i].Value = f.Value + "," + value
			return
		}
	}
	m.Add(key, value)
}

// replace sets the first entry of key to value in place, and adds
// the key when it is absent. Unlike Set it keeps the entry's position, so
// a pseudo-header rewritten by a route stays in front.
func (m *HeaderMap) replace(key, value string) {
	for i, f := range *m {
		if f.Key == key {
			(*m)[i].Value = value
			return
		}
	}
	m.Add(key, value)
}

// Remove removes every entry of key.
func (m *HeaderMap) Remove(key string) {
	remaining := (*m)[:0]
	for _, f := range *m {
		if f.Key != key {
			remaining = append(remaining, f)
		}
	}
	*m = remaining
}

// Clone returns a copy of m that shares no storage with it.
func (m HeaderMap) Clone() HeaderMap {
	return append(HeaderMap(nil), m...)
}

// rawProto returns m with every value in raw_value only, as Envoy 1.27 and
// later send headers to ext_proc.
func (m HeaderMap) rawProto() *corev3.HeaderMap {
	out := &corev3.HeaderMap{}
	for _, f := range m {
		header := &corev3.HeaderValue{Key: f.Key, RawValue: []byte(f.Value)}
		out.Headers = append(out.Headers, header)
	}
	return out
}
