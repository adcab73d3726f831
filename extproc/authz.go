package extproc

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/propagation"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ContextExtensionCluster is the ext_authz context extension that names the
// cluster, set per route or virtual host with check_settings.
const ContextExtensionCluster = "cluster"

// ExtAuthz implements envoy.service.auth.v3.Authorization, which Envoy's
// ext_authz filter and Istio's CUSTOM authorization policies call.
type ExtAuthz struct {
	authv3.UnimplementedAuthorizationServer

	Decider *Decider
}

// Check returns every decision as a CheckResponse and never with a gRPC
// error, because Envoy turns an error into a bare 403 that hides the reason.
func (s *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	named := attrs.GetContextExtensions()[ContextExtensionCluster]

	authority := httpReq.GetHost()
	if authority == "" {
		authority = httpReq.GetHeaders()[":authority"]
	}
	if authority == "" {
		authority = headerValue(httpReq.GetHeaderMap(), ":authority")
	}

	ctx = s.Decider.WithTraceContext(ctx, propagation.MapCarrier(httpReq.GetHeaders()))
	dec := s.Decider.Decide(ctx, APIExtAuthz, named, authority)
	if dec.Outcome != OutcomeAllowed {
		return deniedResponse(dec), nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			// Envoy's ext_authz reads value, not raw_value. Append is false
			// explicitly: Envoy 1.37.0 briefly treated an unset append as
			// append-if-exists, which sent two Authorization headers.
			Headers: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: "authorization", Value: dec.Header},
				Append: wrapperspb.Bool(false),
			}},
		}},
	}, nil
}

func deniedResponse(dec *Decision) *authv3.CheckResponse {
	code := codes.PermissionDenied
	if dec.Outcome == OutcomeUnavailable {
		code = codes.Unavailable
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: dec.Message},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(dec.Status)},
			Headers: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
				Append: wrapperspb.Bool(false),
			}},
			Body: string(dec.Body()),
		}},
	}
}
