package tokens

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// ErrUnknownCluster is returned for a cluster that has no Manager.
var ErrUnknownCluster = errors.New("unknown cluster")

// Set holds the Managers of all configured clusters. It is built once at
// startup and read concurrently afterwards.
type Set struct {
	managers map[string]*Manager
}

// NewSet returns a Set of the given Managers.
func NewSet(managers ...*Manager) *Set {
	s := &Set{managers: make(map[string]*Manager, len(managers))}
	for _, m := range managers {
		s.managers[m.cluster] = m
	}
	return s
}

// Manager returns the Manager of a cluster, or nil.
func (s *Set) Manager(cluster string) *Manager { return s.managers[cluster] }

// AuthorizationHeader returns the Authorization header value for a cluster.
func (s *Set) AuthorizationHeader(ctx context.Context, cluster string) (string, error) {
	m, ok := s.managers[cluster]
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownCluster, cluster)
	}
	return m.Header(ctx)
}

// Run runs every Manager until ctx ends, so first tokens are requested
// concurrently and a slow cluster does not hold up the others.
func (s *Set) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, m := range s.managers {
		wg.Go(func() { m.Run(ctx) })
	}
	wg.Wait()
}

// Ready returns a channel closed once every Manager is ready.
func (s *Set) Ready() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for _, m := range s.managers {
			<-m.Ready()
		}
		close(done)
	}()
	return done
}

// IsReady reports whether every Manager's first token request has ended.
func (s *Set) IsReady() bool {
	for _, m := range s.managers {
		select {
		case <-m.Ready():
		default:
			return false
		}
	}
	return true
}

// Statuses returns the status of every Manager, sorted by cluster name.
func (s *Set) Statuses() []Status {
	out := make([]Status, 0, len(s.managers))
	for _, m := range s.managers {
		out = append(out, m.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cluster < out[j].Cluster })
	return out
}

// InvalidateHeader marks the token sent in an Authorization header value as
// rejected by the upstream, so the cluster fetches a new one. It reports
// whether the token was the cluster's current one.
func (s *Set) InvalidateHeader(cluster, header string) bool {
	m, ok := s.managers[cluster]
	if !ok {
		return false
	}
	token, found := strings.CutPrefix(header, "Bearer ")
	if !found {
		return false
	}
	return m.Invalidate(Fingerprint(token))
}
