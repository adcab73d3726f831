// Package envoysim plays Envoy's part in tests of the dicomweb-oauth proxy
// APIs. A Driver talks to the ext_proc and ext_authz gRPC servers over a real
// connection and checks each reply the way Envoy does. A Proxy puts a Driver
// behind an HTTP reverse proxy with routes, so that end-to-end tests can send
// real HTTP requests through it. Neither is Envoy: the documentation of each
// type lists what it models and what it leaves out.
//
// The package imports no other package of this module, so the tests of
// package extproc can import it without an import cycle.
package envoysim

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Driver plays Envoy's part towards the ext_proc and ext_authz servers
// over a real gRPC connection on 127.0.0.1. It is not Envoy: it has no HTTP
// codec, no filter chain, no routing or route cache, and no retries.
//
// For ext_proc it models the stream state machine of the HTTP filter in
// headers-only mode. Each simulated HTTP request opens one Process stream
// and sends request_headers first, with every value in raw_value only, as
// Envoy 1.27 and later do. The HTTP/1.1 Host header arrives as :authority
// only, never as host. Further phases (request body and trailers, response
// headers, body and trailers) can follow even where the processing_mode skips
// them, so that the server's reply to each phase is checked too. Each reply
// is checked the way Envoy checks it:
//   - a reply that is not of the phase's type, or has no type at all, is a
//     spurious message, which Envoy 1.35 and later turn into a 500;
//   - a HeaderValue with both value and raw_value is an invalid mutation, and
//     so is a key or value with NUL, CR or LF, which Envoy turns into a 500;
//   - a set header is read from raw_value only, so a header sent in value
//     alone reaches the upstream empty;
//   - append true adds one more value, unset or false overwrites, and
//     append_action is never read, because released ext_proc filters ignore
//     it;
//   - host, :authority, :scheme, :method and x-envoy-* headers are not set,
//     under the default HeaderMutationRules;
//   - pseudo-headers, host and x-envoy-* headers are not removed, and
//     removals are applied before sets;
//   - an ImmediateResponse status below 200 becomes 200;
//   - a reply later than MessageTimeout (message_timeout, 200 ms by default)
//     fails the request the way failure_mode_allow: false does, as a 504.
//
// The stream ends the way Envoy ends it: CloseSend after the last message,
// or, with EndCancel, a reset that the server's Recv returns as
// codes.Canceled.
//
// For ext_authz it sends one CheckRequest per request, with lower-case header
// keys, the values of a repeated header joined by ",", and the cluster in
// context_extensions. It applies OkHttpResponse.headers as the ext_authz
// filter does: it reads value and never raw_value, append true joins the new
// value to the existing one with ",", unset or false overwrites, and
// headers_to_remove is applied after the headers are set. A failed or late
// Check call fails the request with 403, as Envoy does unless
// status_on_error is set.
//
// Not modelled: body buffering and streaming modes, mode_override,
// failure_mode_allow: true, header count and size limits, per-route
// configuration, allowed_headers filtering, and the gRPC stream errors that
// Envoy's own side can raise.
//
// A Driver is safe for concurrent use once its fields are set.
type Driver struct {
	ExtProc extprocv3.ExternalProcessorClient
	Authz   authv3.AuthorizationClient

	// MessageTimeout bounds the wait for each ext_proc reply and for each
	// Check call. It is the ext_proc filter's message_timeout and the
	// ext_authz gRPC service timeout, both 200 ms by default.
	MessageTimeout time.Duration

	// AuthzUnsetAppendAdds makes an ext_authz header without append add one
	// more value, as the ext_authz gRPC client at envoyproxy/envoy commit
	// 0532e02 does by reading the unset append_action as
	// APPEND_IF_EXISTS_OR_ADD. The documented behaviour, false, overwrites.
	AuthzUnsetAppendAdds bool

	conn *grpc.ClientConn

	// handlerEnds receives how each ext_proc stream handler on the server
	// ended, when there is room in its buffer. It is nil for a Driver from
	// Dial, which serves nothing.
	handlerEnds chan HandlerEnd
}

// HandlerEnd is how one server-side ext_proc stream handler ended.
type HandlerEnd struct {
	// Err is the handler's return value.
	Err error
	// RecvErr is the error of the handler's last Recv, such as io.EOF after
	// CloseSend or codes.Canceled after a reset.
	RecvErr error
}

// recordingStream remembers the error of the last RecvMsg.
type recordingStream struct {
	grpc.ServerStream
	recvErr error
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err != nil {
		s.recvErr = err
	}
	return err
}

// DefaultMessageTimeout is the default of Envoy's ext_proc message_timeout
// and ext_authz gRPC timeout.
const DefaultMessageTimeout = 200 * time.Millisecond

// StartDriver serves extProc and authz (either may be nil) on a gRPC
// server at 127.0.0.1 with a port picked at run time, and returns a Driver
// connected to it. The server and the connection are closed in tb.Cleanup.
func StartDriver(tb testing.TB, extProc extprocv3.ExternalProcessorServer,
	authz authv3.AuthorizationServer) *Driver {
	tb.Helper()

	handlerEnds := make(chan HandlerEnd, 16)
	record := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
		handler grpc.StreamHandler) error {
		recording := &recordingStream{ServerStream: ss}
		err := handler(srv, recording)
		select {
		case handlerEnds <- HandlerEnd{Err: err, RecvErr: recording.recvErr}:
		default:
		}
		return err
	}
	server := grpc.NewServer(grpc.StreamInterceptor(record))
	if extProc != nil {
		extprocv3.RegisterExternalProcessorServer(server, extProc)
	}
	if authz != nil {
		authv3.RegisterAuthorizationServer(server, authz)
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on 127.0.0.1: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	tb.Cleanup(func() {
		server.Stop()
		if err := <-served; err != nil {
			tb.Errorf("gRPC server stopped with error: %v", err)
		}
	})

	d, err := Dial(listener.Addr().String())
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { _ = d.Close() })
	d.handlerEnds = handlerEnds
	return d
}

// Dial returns a Driver for a gRPC server that someone else runs, such as
// the service under test in an end-to-end test. The target is host:port,
// and the host must be a loopback address or localhost, because the
// simulator models an Envoy on the same machine. The connection is made
// lazily, so Dial succeeds even when nothing listens on target. Close the
// Driver when done.
func Dial(target string) (*Driver, error) {
	if err := checkLoopback(target); err != nil {
		return nil, fmt.Errorf("envoysim: gRPC target: %w", err)
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy())
	if err != nil {
		return nil, fmt.Errorf("envoysim: gRPC client for %s: %w", target, err)
	}
	return &Driver{
		ExtProc:        extprocv3.NewExternalProcessorClient(conn),
		Authz:          authv3.NewAuthorizationClient(conn),
		MessageTimeout: DefaultMessageTimeout,
		conn:           conn,
	}, nil
}

// Close closes the Driver's gRPC connection.
func (d *Driver) Close() error {
	return d.conn.Close()
}

// checkLoopback returns an error unless hostport names a loopback address
// or localhost.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("invalid address %q, want host:port: %w", hostport, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("host %q is not a loopback address (want 127.0.0.1, [::1] or localhost)", host)
}

// NextHandlerEnd waits for the next ext_proc stream handler to return. The
// 5 s wait only guards against a hang. It works only for a Driver from
// StartDriver.
func (d *Driver) NextHandlerEnd(tb testing.TB) HandlerEnd {
	tb.Helper()
	if d.handlerEnds == nil {
		tb.Fatal("the driver serves no gRPC server, so it sees no handler end; use StartDriver")
	}
	select {
	case end := <-d.handlerEnds:
		return end
	case <-time.After(5 * time.Second):
		tb.Fatal("the ext_proc stream handler did not return within 5 s after the stream ended")
		return HandlerEnd{}
	}
}

// Failure is a request that Envoy fails itself with a local reply, because
// the external service broke a rule, could not be reached or was too late.
type Failure struct {
	// Status is the HTTP status of Envoy's local reply.
	Status int
	Reason string
}

func (f *Failure) Error() string {
	return fmt.Sprintf("envoy fails the request with %d: %s", f.Status, f.Reason)
}

// FailureStatus returns the status of the *Failure in err, or 0.
func FailureStatus(err error) int {
	var f *Failure
	if errors.As(err, &f) {
		return f.Status
	}
	return 0
}
