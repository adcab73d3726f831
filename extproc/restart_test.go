package extproc

import (
	"context"
	"net"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/envoysim"
)

// gatedSource returns testHeaders once release is closed, ignoring its
// context, so that a stream stays open for as long as the test needs.
type gatedSource struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gatedSource) AuthorizationHeader(ctx context.Context, cluster string) (string, error) {
	g.entered <- struct{}{}
	<-g.release
	return testHeaders[cluster], nil
}

// serveExtProc serves ExtProc over source on addr ("127.0.0.1:0" picks a
// port) and returns the server and the address it listens on.
func serveExtProc(t *testing.T, addr string, source HeaderSource) (*grpc.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	log, _ := newTestLogger()
	decider := newTestDecider(t, source, log)
	decider.Timeout = 5 * time.Second
	server := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(server, &ExtProc{Decider: decider, Log: log})
	go func() { _ = server.Serve(ln) }()
	t.Cleanup(server.Stop)
	return server, ln.Addr().String()
}

// TestExtProcGracefulStopFinishesStreams: when the service stops with
// streams open, as on SIGTERM, each open stream still gets its reply.
func TestExtProcGracefulStopFinishesStreams(t *testing.T) {
	source := &gatedSource{entered: make(chan struct{}, 1), release: make(chan struct{})}
	server, addr := serveExtProc(t, "127.0.0.1:0", source)
	driver, err := envoysim.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = driver.Close() })
	driver.MessageTimeout = 10 * time.Second

	type outcome struct {
		res *envoysim.ExtProcResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{ClusterName: "pacs-a"})
		done <- outcome{res, err}
	}()
	<-source.entered

	stopped := make(chan struct{})
	go func() { server.GracefulStop(); close(stopped) }()
	close(source.release)

	got := <-done
	if got.err != nil {
		t.Fatalf("request open during the stop failed: %v", got.err)
	}
	checkHeader(t, "upstream", got.res.Upstream, "authorization", "Bearer test-token-a")
	<-stopped
}

// TestExtProcServiceRestart: the service restarts on the same address while
// a stream is open. The open request fails, as Envoy fails it with
// failure_mode_allow false, and requests after the restart succeed on the
// same client connection once it reconnects.
func TestExtProcServiceRestart(t *testing.T) {
	source := &gatedSource{entered: make(chan struct{}, 1), release: make(chan struct{})}
	server, addr := serveExtProc(t, "127.0.0.1:0", source)
	driver, err := envoysim.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = driver.Close() })
	driver.MessageTimeout = 10 * time.Second

	failed := make(chan error, 1)
	go func() {
		_, err := driver.RunExtProc(context.Background(), envoysim.ProxiedRequest{ClusterName: "pacs-a"})
		failed <- err
	}()
	<-source.entered
	server.Stop()
	close(source.release)
	if err := <-failed; err == nil {
		t.Fatal("request open while the service was killed succeeded, want a failure")
	}

	restarted := &fakeSource{}
	serveExtProc(t, addr, restarted)

	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := driver.RunExtProc(ctx, envoysim.ProxiedRequest{ClusterName: "pacs-b"})
		cancel()
		if err == nil {
			checkHeader(t, "upstream", res.Upstream, "authorization", "Bearer test-token-b")
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request succeeded within 15s of the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
