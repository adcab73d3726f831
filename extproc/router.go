package extproc

import (
	"fmt"
	"net"
	"sort"
	"strings"
)

// Router maps a request to the configured cluster whose token it needs.
// It is immutable after NewRouter and safe for concurrent use.
type Router struct {
	clusters map[string]bool
	// hosts maps a normalized host, or host:port, to its cluster.
	hosts map[string]string
}

// NewRouter returns a Router for clusters given as name to host list. A host
// is a name or an address, with or without a port, matched without regard to
// case. It fails when two clusters list the same host.
func NewRouter(clusterHosts map[string][]string) (*Router, error) {
	r := &Router{clusters: map[string]bool{}, hosts: map[string]string{}}

	names := make([]string, 0, len(clusterHosts))
	for name := range clusterHosts {
		names = append(names, name)
	}
	sort.Strings(names)

	for _, name := range names {
		r.clusters[name] = true
		for _, h := range clusterHosts[name] {
			key := NormalizeHost(h)
			if other, dup := r.hosts[key]; dup && other != name {
				return nil, fmt.Errorf("host %q is listed by clusters %q and %q; a host can belong to one cluster only",
					h, other, name)
			}
			r.hosts[key] = name
		}
	}
	return r, nil
}

// Cluster returns the cluster for a request. A cluster named by the proxy
// wins, and one that is not configured is not found, so a token never goes to
// a cluster it was not configured for. Without a name, the request's
// authority (host and optional port) is matched against the clusters' hosts:
// host:port first, then the host alone.
func (r *Router) Cluster(named, authority string) (string, bool) {
	if named != "" {
		return named, r.clusters[named]
	}
	if authority == "" {
		return "", false
	}

	key := NormalizeHost(authority)
	if c, ok := r.hosts[key]; ok {
		return c, true
	}
	if host, _, err := net.SplitHostPort(key); err == nil {
		if c, ok := r.hosts[NormalizeHost(host)]; ok {
			return c, true
		}
	}
	return "", false
}

// NormalizeHost returns the form in which a Router compares hosts: lower
// case, without a trailing dot or IPv6 brackets, with the port kept.
func NormalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if host, port, err := net.SplitHostPort(h); err == nil {
		return net.JoinHostPort(strings.TrimSuffix(host, "."), port)
	}
	h = strings.TrimSuffix(h, ".")
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}
