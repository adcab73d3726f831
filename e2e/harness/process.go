package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const StopGrace = 5 * time.Second

// ProcessSpec describes a program for Env.Start.
type ProcessSpec struct {
	// Name labels the process in logs and file names, for example "orthanc-a".
	Name string
	Path string
	Args []string
	// Dir is the working directory. Empty means a new folder in the Env.
	Dir string
	// LogFiles are files the program writes its own logs to, such as the
	// nginx error log. Tail reports them after stdout and stderr.
	LogFiles []string
}

// Process is a child process whose stdout and stderr go to files.
type Process struct {
	name       string
	cmd        *exec.Cmd
	stdoutPath string
	stderrPath string
	extraLogs  []string
	logFiles   []*os.File

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

func startProcess(spec ProcessSpec, logDir string) (*Process, error) {
	p := &Process{
		name:       spec.Name,
		stdoutPath: filepath.Join(logDir, spec.Name+".stdout.log"),
		stderrPath: filepath.Join(logDir, spec.Name+".stderr.log"),
		extraLogs:  spec.LogFiles,
		done:       make(chan struct{}),
	}
	stdout, err := os.Create(p.stdoutPath)
	if err != nil {
		return nil, fmt.Errorf("create stdout file of %s: %w", spec.Name, err)
	}
	stderr, err := os.Create(p.stderrPath)
	if err != nil {
		stdout.Close()
		return nil, fmt.Errorf("create stderr file of %s: %w", spec.Name, err)
	}
	p.logFiles = []*os.File{stdout, stderr}

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = childEnvironment()
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A process group of its own lets Stop kill helpers such as nginx
		// workers together with the main process.
		Setpgid: true,
		// The kernel sends SIGTERM to the child when the thread that started
		// it exits, which covers a test binary that dies without running its
		// cleanups. SIGTERM, not SIGKILL, so that an nginx master still
		// stops its workers.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		p.closeLogs()
		return nil, fmt.Errorf("start %s (%s): %w", spec.Name, spec.Path, err)
	}
	p.cmd = cmd

	go func() {
		p.waitErr = cmd.Wait()
		p.closeLogs()
		close(p.done)
	}()
	return p, nil
}

func (p *Process) closeLogs() {
	for _, file := range p.logFiles {
		_ = file.Close()
	}
}

// Name returns the label given in ProcessSpec.
func (p *Process) Name() string { return p.name }

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done returns a channel that is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitError returns the result of waiting for the process; call it only
// after Done is closed.
func (p *Process) ExitError() error { return p.waitErr }

// StderrPath returns the file that receives the process's stderr.
func (p *Process) StderrPath() string { return p.stderrPath }

// Stop sends SIGTERM to the process and waits up to StopGrace for it to
// exit, and then sends SIGKILL to its process group. A process that has
// already exited is left alone. Calling Stop again returns the first result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(StopGrace) })
	return p.stopErr
}

func (p *Process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send SIGTERM to %s (pid %d): %w", p.name, p.PID(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}

	// The process group ID equals the PID because of Setpgid.
	if err := syscall.Kill(-p.PID(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send SIGKILL to process group %d of %s: %w", p.PID(), p.name, err)
	}
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.name, p.PID(), grace)
}

// Tail returns the last lines of the process's stdout, stderr and log files.
func (p *Process) Tail(lines int) string {
	var b strings.Builder
	paths := append([]string{p.stdoutPath, p.stderrPath}, p.extraLogs...)
	for _, path := range paths {
		text := tailFile(path, lines)
		if text == "" {
			continue
		}
		fmt.Fprintf(&b, "--- %s (pid %d) %s ---\n%s", p.name, p.PID(), filepath.Base(path), text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// tailFile returns the last lines of a file, read from at most its last 64 KiB.
func tailFile(path string, lines int) string {
	const maxBytes = 64 << 10
	file, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer file.Close()

	info, err := file.Stat()
	if err != nil {
		return ""
	}
	if info.Size() > maxBytes {
		if _, err := file.Seek(info.Size()-maxBytes, io.SeekStart); err != nil {
			return ""
		}
	}
	data, err := io.ReadAll(file)
	if err != nil {
		return ""
	}

	data = bytes.TrimRight(data, "\n")
	all := strings.Split(string(data), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// childEnvironment returns the test process's environment without proxy
// settings, so that Orthanc (libcurl), nginx and the service reach
// 127.0.0.1 directly.
func childEnvironment() []string {
	var env []string
	for _, entry := range os.Environ() {
		name, _, _ := strings.Cut(entry, "=")
		switch strings.ToLower(name) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, entry)
	}
	return append(env, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}
