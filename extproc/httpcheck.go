package extproc

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
)

// CheckPathPrefix is the path of the HTTP auth-request endpoint. The cluster
// is the path segment after it: /check/{cluster}. Anything after the cluster
// is ignored, so Envoy's HTTP ext_authz can append the original path with
// path_prefix: /check/{cluster}.
const CheckPathPrefix = "/check/"

// HTTPCheck is the HTTP auth-request endpoint shared by Envoy's HTTP
// ext_authz, nginx auth_request and Traefik forwardAuth. It accepts any
// method and ignores the body. It responds with 200 and the Authorization header,
// or 403 or 503 with a JSON body and the reason in the
// X-Dicomweb-Oauth-Error header.
//
// When the path names no cluster (just /check), the cluster is found by
// matching X-Forwarded-Host, then Host, against the clusters' hosts.
type HTTPCheck struct {
	Decider *Decider
}

func (h *HTTPCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	named, ok := clusterFromPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}

	authority := r.Header.Get("X-Forwarded-Host")
	if authority == "" {
		authority = r.Host
	}

	ctx := h.Decider.WithTraceContext(r.Context(), propagation.HeaderCarrier(r.Header))
	dec := h.Decider.Decide(ctx, APIHTTP, named, authority)
	w.Header().Set("Cache-Control", "no-store")
	if dec.Outcome == OutcomeAllowed {
		w.Header().Set("Authorization", dec.Header)
		w.WriteHeader(http.StatusOK)
		return
	}

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Dicomweb-Oauth-Error", dec.Outcome)
	w.WriteHeader(dec.Status)
	_, _ = w.Write(dec.Body())
}

// clusterFromPath returns the cluster named in /check/{cluster}[/...], or ""
// for /check and /check/. ok is false for any other path.
func clusterFromPath(path string) (cluster string, ok bool) {
	if path == strings.TrimSuffix(CheckPathPrefix, "/") {
		return "", true
	}
	rest, found := strings.CutPrefix(path, CheckPathPrefix)
	if !found {
		return "", false
	}
	cluster, _, _ = strings.Cut(rest, "/")
	return cluster, true
}
