// Package harness starts and stops the programs of the end-to-end test bed
// (Orthanc, nginx and the dicomweb-oauth service) in a temporary folder, on
// free ports of 127.0.0.1, and keeps their output in files for failure reports.
package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// pollInterval is the pause between two readiness checks.
const pollInterval = 50 * time.Millisecond

// Env is a temporary folder and the processes and servers started in it.
// Close stops them all. Its methods are safe for concurrent use.
type Env struct {
	dir string

	mu        sync.Mutex
	processes []*Process
	logs      []namedLog
	cleanups  []func()
	closed    bool
}

// namedLog is a log file of an in-process server, for LogTails.
type namedLog struct {
	name, path string
}

// NewEnv returns an Env that keeps its files in dir, which must exist.
func NewEnv(dir string) *Env {
	return &Env{dir: dir}
}

// Dir returns the folder of the Env.
func (e *Env) Dir() string { return e.dir }

// MakeDir creates a folder with the given name in the Env and returns its path.
func (e *Env) MakeDir(name string) (string, error) {
	path := filepath.Join(e.dir, name)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return "", fmt.Errorf("create folder %s: %w", path, err)
	}
	return path, nil
}

// Start runs a program with its output in files in the Env. Close stops it.
func (e *Env) Start(spec ProcessSpec) (*Process, error) {
	if spec.Dir == "" {
		dir, err := e.MakeDir(spec.Name)
		if err != nil {
			return nil, err
		}
		spec.Dir = dir
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("harness: Start called after Close")
	}
	p, err := startProcess(spec, e.dir)
	if err != nil {
		return nil, err
	}
	e.processes = append(e.processes, p)
	return p, nil
}

// AddCleanup registers a function that Close calls, such as the Close method
// of an in-process server.
func (e *Env) AddCleanup(cleanup func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, cleanup)
}

// AddLog registers the log file of an in-process server, such as a
// simulated proxy, so that LogTails reports it after the processes.
func (e *Env) AddLog(name, path string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, namedLog{name: name, path: path})
}

// Close stops every process, newest first, and then runs the cleanups,
// newest first. It returns the errors of processes that had to be killed.
func (e *Env) Close() error {
	e.mu.Lock()
	e.closed = true
	processes := e.processes
	cleanups := e.cleanups
	e.cleanups = nil
	e.mu.Unlock()

	var errs []error
	for i := len(processes) - 1; i >= 0; i-- {
		if err := processes[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	return errors.Join(errs...)
}

// LogTails returns the last lines of the output of every process, in start
// order, and then of every log added with AddLog, with a header line per file.
func (e *Env) LogTails(lines int) string {
	e.mu.Lock()
	processes := append([]*Process(nil), e.processes...)
	logs := append([]namedLog(nil), e.logs...)
	e.mu.Unlock()

	var b strings.Builder
	for _, p := range processes {
		b.WriteString(p.Tail(lines))
	}
	for _, l := range logs {
		text := tailFile(l.path, lines)
		if text == "" {
			continue
		}
		fmt.Fprintf(&b, "--- %s %s ---\n%s\n", l.name, filepath.Base(l.path), text)
	}
	return b.String()
}

// FreeAddrs returns n distinct "127.0.0.1:port" addresses that were free when
// checked. All n listeners are open at once, so the ports differ. Another
// program can still take a port between this call and its use.
func FreeAddrs(n int) ([]string, error) {
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, listener := range listeners {
			_ = listener.Close()
		}
	}()

	addrs := make([]string, 0, n)
	for range n {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		listeners = append(listeners, listener)
		addrs = append(addrs, listener.Addr().String())
	}
	return addrs, nil
}

// Port returns the port of a "host:port" address.
func Port(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return port
}

// directClient returns an HTTP client that never uses a proxy from the
// environment.
func directClient(timeout time.Duration) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.DisableKeepAlives = true
	return &http.Client{Transport: transport, Timeout: timeout}
}

// WaitHTTP polls url with GET until the response status is wantStatus. It fails early if
// p exits, and when ctx ends.
func WaitHTTP(ctx context.Context, url string, wantStatus int, p *Process) error {
	client := directClient(2 * time.Second)
	var last string
	for {
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build readiness request for %s: %w", url, err)
		}
		response, err := client.Do(request)
		if err == nil {
			response.Body.Close()
			if response.StatusCode == wantStatus {
				return nil
			}
			last = fmt.Sprintf("status %d", response.StatusCode)
		} else {
			last = err.Error()
		}

		select {
		case <-p.Done():
			return fmt.Errorf("%s exited before %s answered %d: %v", p.Name(), url, wantStatus, p.ExitError())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %s did not answer %d (last: %s): %w",
				p.Name(), url, wantStatus, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}
