package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Envoy is a running Envoy.
type Envoy struct {
	// URL is the base URL of the listener, for example "http://127.0.0.1:41235".
	URL        string
	AdminURL   string
	ConfigPath string
	Process    *Process
}

// FindEnvoy returns the envoy binary on PATH. No Envoy package is
// installable on the machines this project's CI runs on, so e2e/install-deps.sh
// does not install one.
func FindEnvoy() (string, error) {
	binary, err := exec.LookPath("envoy")
	if err != nil {
		return "", fmt.Errorf("envoy binary not found in PATH: %w", err)
	}
	return binary, nil
}

// RenderEnvoy returns an Envoy bootstrap in YAML whose listener and admin
// interface listen on the given addresses.
type RenderEnvoy func(listener, admin string) ([]byte, error)

// StartEnvoy writes the bootstrap that render returns into a new folder of the
// Env, starts Envoy with it, and waits until the admin interface reports the
// server ready and the host of healthyCluster passes its health check.
//
// Envoy runs with one worker thread and logs to envoy.log in its folder. Its
// hot-restart base ID is the admin port, which no other process holds while
// this Envoy runs, so Envoys of parallel tests do not share one.
func (e *Env) StartEnvoy(ctx context.Context, render RenderEnvoy, healthyCluster string) (*Envoy, error) {
	binary, err := FindEnvoy()
	if err != nil {
		return nil, err
	}
	dir, err := e.MakeDir("envoy")
	if err != nil {
		return nil, err
	}
	addrs, err := FreeAddrs(2)
	if err != nil {
		return nil, err
	}
	listener, admin := addrs[0], addrs[1]

	config, err := render(listener, admin)
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(configPath, config, 0o600); err != nil {
		return nil, fmt.Errorf("write Envoy configuration: %w", err)
	}

	logPath := filepath.Join(dir, "envoy.log")
	p, err := e.Start(ProcessSpec{
		Name: "envoy",
		Path: binary,
		Args: []string{
			"-c", configPath,
			"--base-id", Port(admin),
			"--concurrency", "1",
			"--log-level", "info",
			"--log-path", logPath,
		},
		Dir:      dir,
		LogFiles: []string{logPath},
	})
	if err != nil {
		return nil, err
	}
	envoy := &Envoy{
		URL:        "http://" + listener,
		AdminURL:   "http://" + admin,
		ConfigPath: configPath,
		Process:    p,
	}
	if err := WaitHTTP(ctx, envoy.AdminURL+"/ready", 200, p); err != nil {
		return nil, err
	}
	if err := envoy.waitHealthy(ctx, healthyCluster); err != nil {
		return nil, err
	}
	return envoy, nil
}

// waitHealthy polls the admin /clusters page until a host of the cluster
// has the health flag "healthy", in lines such as
// "dicomweb_oauth::127.0.0.1:9001::health_flags::healthy".
func (v *Envoy) waitHealthy(ctx context.Context, cluster string) error {
	client := directClient(2 * time.Second)
	prefix := cluster + "::"
	lastFlags, lastErr := "none seen", error(nil)
	for {
		page, err := getText(ctx, client, v.AdminURL+"/clusters")
		if err != nil && ctx.Err() == nil {
			lastErr = err
		}
		for line := range strings.Lines(page) {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, prefix) && strings.Contains(line, "::health_flags::") {
				if strings.HasSuffix(line, "::healthy") {
					return nil
				}
				lastFlags = line
			}
		}

		select {
		case <-v.Process.Done():
			return fmt.Errorf("envoy exited before cluster %s was healthy: %v", cluster, v.Process.ExitError())
		case <-ctx.Done():
			return fmt.Errorf("envoy cluster %s not healthy (last health flags: %s, last error: %v): %w",
				cluster, lastFlags, lastErr, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// getText returns the body of a GET request with status 200, read up to 1 MiB.
func getText(ctx context.Context, client *http.Client, url string) (string, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("build request for %s: %w", url, err)
	}
	response, err := client.Do(request)
	if err != nil {
		return "", err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	if response.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d", url, response.StatusCode)
	}
	return string(body), nil
}
