package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/health"

	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// TestGRPCServerAdmitsEnvoyPings sends HTTP/2 PINGs on an idle connection
// every 1.2 s, as Envoy's connection_keepalive may. A Go gRPC server with
// the default enforcement policy (5 minutes) ends such a connection with
// GOAWAY too_many_pings within five pings; this server must not.
func TestGRPCServerAdmitsEnvoyPings(t *testing.T) {
	router, err := extproc.NewRouter(map[string][]string{})
	if err != nil {
		t.Fatal(err)
	}
	server := newGRPCServer(&extproc.Decider{Router: router}, tokens.NewSet(), health.NewServer(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.Serve(ln) }()
	t.Cleanup(server.Stop)

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	framer := http2.NewFramer(conn, conn)
	if err := framer.WriteSettings(); err != nil {
		t.Fatal(err)
	}

	events := make(chan frameEvent, 64)
	go readFrames(framer, events)

	const pings = 5
	for i := 0; i < pings; i++ {
		if i > 0 {
			time.Sleep(1200 * time.Millisecond)
		}
		data := [8]byte{byte(i + 1)}
		if err := framer.WritePing(false, data); err != nil {
			t.Fatalf("ping %d: %v", i+1, err)
		}
		if err := awaitPingAck(events, data); err != nil {
			t.Fatalf("ping %d: %v", i+1, err)
		}
	}
}

// frameEvent is a frame the server sent that the test cares about.
type frameEvent struct {
	pingAck *[8]byte
	goAway  string
}

// readFrames reports PING acknowledgements and GOAWAY frames until the
// connection fails, then closes events.
func readFrames(framer *http2.Framer, events chan<- frameEvent) {
	defer close(events)
	for {
		f, err := framer.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if f.IsAck() {
				data := f.Data
				events <- frameEvent{pingAck: &data}
			}
		case *http2.GoAwayFrame:
			events <- frameEvent{goAway: f.ErrCode.String() + " " + string(f.DebugData())}
		}
	}
}

// awaitPingAck waits for the acknowledgement of one PING.
func awaitPingAck(events <-chan frameEvent, data [8]byte) error {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-events:
			switch {
			case !ok:
				return errors.New("the server closed the connection")
			case e.goAway != "":
				return errors.New("the server sent GOAWAY: " + e.goAway)
			case e.pingAck != nil && *e.pingAck == data:
				return nil
			}
		case <-timeout:
			return errors.New("no PING acknowledgement within 10s")
		}
	}
}
