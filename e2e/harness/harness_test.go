package harness

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFreeAddrsDistinct(t *testing.T) {
	addrs, err := FreeAddrs(5)
	if err != nil {
		t.Fatalf("FreeAddrs: %v", err)
	}

	seen := map[string]bool{}
	for _, addr := range addrs {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("address %q is not on 127.0.0.1", addr)
		}
		if Port(addr) == "" || Port(addr) == "0" {
			t.Errorf("address %q has no port", addr)
		}
		if seen[addr] {
			t.Errorf("address %q returned twice", addr)
		}
		seen[addr] = true
	}
}

func TestProcessStop(t *testing.T) {
	tests := []struct {
		name        string
		script      string
		wantKilled  bool
		wantRunning bool
	}{
		{"exits on SIGTERM", "exec sleep 30", false, true},
		{"ignores SIGTERM", `trap "" TERM; sleep 30 & wait`, true, true},
		{"already exited", "exit 0", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := NewEnv(t.TempDir())
			p, err := env.Start(ProcessSpec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", tt.script}})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if !tt.wantRunning {
				<-p.Done()
			}
			// Give the shell time to install its trap.
			time.Sleep(100 * time.Millisecond)

			err = p.stop(300 * time.Millisecond)

			if got := err != nil; got != tt.wantKilled {
				t.Errorf("stop error = %v, want killed = %v", err, tt.wantKilled)
			}
			select {
			case <-p.Done():
			default:
				t.Error("process still running after stop")
			}
		})
	}
}

func TestEnvCloseStopsProcessesAndRunsCleanups(t *testing.T) {
	env := NewEnv(t.TempDir())
	p, err := env.Start(ProcessSpec{Name: "sleeper", Path: "/bin/sh", Args: []string{"-c", "exec sleep 30"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cleaned := false
	env.AddCleanup(func() { cleaned = true })

	if err := env.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	select {
	case <-p.Done():
	default:
		t.Error("process still running after Close")
	}
	if !cleaned {
		t.Error("cleanup did not run")
	}
	if _, err := env.Start(ProcessSpec{Name: "late", Path: "/bin/true"}); err == nil {
		t.Error("Start after Close succeeded, want an error")
	}
}

func TestProcessTail(t *testing.T) {
	env := NewEnv(t.TempDir())
	script := `for i in 1 2 3 4 5; do echo "out $i"; echo "err $i" >&2; done`
	p, err := env.Start(ProcessSpec{Name: "printer", Path: "/bin/sh", Args: []string{"-c", script}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	<-p.Done()

	tail := env.LogTails(2)

	for _, want := range []string{"out 4\nout 5\n", "err 4\nerr 5\n", "printer.stdout.log", "printer.stderr.log"} {
		if !strings.Contains(tail, want) {
			t.Errorf("tail does not contain %q:\n%s", want, tail)
		}
	}
	if strings.Contains(tail, "out 3") {
		t.Errorf("tail has more than 2 lines per file:\n%s", tail)
	}
}

func TestLogTailsIncludesAddedLog(t *testing.T) {
	env := NewEnv(t.TempDir())
	path := filepath.Join(env.Dir(), "proxy.log")
	if err := os.WriteFile(path, []byte("line 1\nline 2\nline 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env.AddLog("proxy", path)
	env.AddLog("absent", filepath.Join(env.Dir(), "absent.log"))

	tail := env.LogTails(2)

	if want := "--- proxy proxy.log ---\nline 2\nline 3\n"; !strings.Contains(tail, want) {
		t.Errorf("tail does not contain %q:\n%s", want, tail)
	}
	if strings.Contains(tail, "line 1") {
		t.Errorf("tail has more than 2 lines of the log:\n%s", tail)
	}
	if strings.Contains(tail, "absent") {
		t.Errorf("tail names a log file that does not exist:\n%s", tail)
	}
}

func TestChildEnvironmentDropsProxies(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://proxy.invalid:3128")
	t.Setenv("https_proxy", "http://proxy.invalid:3128")
	t.Setenv("ALL_PROXY", "socks5://proxy.invalid:1080")

	for _, entry := range childEnvironment() {
		name, value, _ := strings.Cut(entry, "=")
		if strings.HasSuffix(strings.ToLower(name), "_proxy") && strings.Contains(value, "proxy.invalid") {
			t.Errorf("child environment keeps %s", entry)
		}
	}
}

func TestWaitHTTP(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(server.Close)

	tests := []struct {
		name       string
		script     string
		wantStatus int
		wantError  string
	}{
		{"ready", "exec sleep 30", http.StatusServiceUnavailable, ""},
		{"process exits", "exit 3", http.StatusOK, "exited before"},
		{"timeout", "exec sleep 30", http.StatusOK, "not ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := NewEnv(t.TempDir())
			t.Cleanup(func() { _ = env.Close() })
			p, err := env.Start(ProcessSpec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", tt.script}})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()

			err = WaitHTTP(ctx, server.URL, tt.wantStatus, p)

			if tt.wantError == "" && err != nil {
				t.Errorf("WaitHTTP: %v", err)
			}
			if tt.wantError != "" && (err == nil || !strings.Contains(err.Error(), tt.wantError)) {
				t.Errorf("WaitHTTP error = %v, want one containing %q", err, tt.wantError)
			}
		})
	}
}

func TestOrthancConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "orthanc.json")
	chunked := true
	cfg := OrthancConfig{
		Name: "a",
		DicomWebServers: map[string]DicomWebServer{
			"protected": {URL: "http://127.0.0.1:1234/dicom-web/", ChunkedTransfers: &chunked},
		},
	}

	if err := writeOrthancConfig(path, dir, "/plugin.so", []string{"127.0.0.1:1001", "127.0.0.1:1002"}, cfg); err != nil {
		t.Fatalf("writeOrthancConfig: %v", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read configuration: %v", err)
	}
	var config map[string]any
	if err := json.Unmarshal(raw, &config); err != nil {
		t.Fatalf("configuration is not JSON: %v", err)
	}

	checks := map[string]any{
		"HttpPort":              float64(1001),
		"DicomPort":             float64(1002),
		"RemoteAccessAllowed":   false,
		"AuthenticationEnabled": false,
		"DicomServerEnabled":    false,
	}
	for key, want := range checks {
		if config[key] != want {
			t.Errorf("%s = %v, want %v", key, config[key], want)
		}
	}
	servers := config["DicomWeb"].(map[string]any)["Servers"].(map[string]any)
	protected := servers["protected"].(map[string]any)
	if protected["Url"] != "http://127.0.0.1:1234/dicom-web/" || protected["ChunkedTransfers"] != true {
		t.Errorf("DicomWeb.Servers.protected = %v", protected)
	}
}

// TestNginxConfigValid renders every mode and checks the result with
// "nginx -t", so a template change that nginx rejects fails here first.
func TestNginxConfigValid(t *testing.T) {
	binary, findErr := FindNginx()
	tests := []struct {
		mode        InjectionMode
		contains    []string
		notContains []string
	}{
		{InjectFromService, []string{"auth_request /_dicomweb_oauth;", "error_page 500 =503",
			"proxy_pass http://127.0.0.1:9/check/protected-orthanc;"}, nil},
		{InjectStatic, []string{`proxy_set_header Authorization "Bearer abc.def.ghi";`},
			[]string{"auth_request /", "location = /_dicomweb_oauth"}},
		{InjectNone, nil, []string{"auth_request /", "proxy_set_header Authorization"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			prefix := t.TempDir()
			for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
				if err := os.MkdirAll(filepath.Join(prefix, "temp", name), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(prefix, "nginx.conf")
			data := nginxTemplateData{
				NginxConfig: NginxConfig{
					Mode:                tt.mode,
					Upstream:            "127.0.0.1:8",
					CheckURL:            "http://127.0.0.1:9/check/protected-orthanc",
					Cluster:             "protected-orthanc",
					StaticAuthorization: "Bearer abc.def.ghi",
				},
				Prefix: prefix,
				Listen: "127.0.0.1:7",
			}
			if err := writeTemplate(path, nginxTemplate, data); err != nil {
				t.Fatalf("render: %v", err)
			}
			raw, _ := os.ReadFile(path)
			config := string(raw)

			for _, want := range tt.contains {
				if !strings.Contains(config, want) {
					t.Errorf("configuration lacks %q", want)
				}
			}
			for _, unwanted := range tt.notContains {
				if strings.Contains(config, unwanted) {
					t.Errorf("configuration contains %q", unwanted)
				}
			}

			if findErr != nil {
				t.Skipf("nginx -t not run: %v", findErr)
			}
			cmd := exec.Command(binary, "-t", "-q", "-p", prefix, "-c", path, "-e", filepath.Join(prefix, "error.log"))
			if output, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("nginx -t: %v: %s", err, output)
			}
		})
	}
}

func TestStartNginxRejectsUnsafeValue(t *testing.T) {
	env := NewEnv(t.TempDir())
	_, err := env.StartNginx(context.Background(), NginxConfig{
		Mode:                InjectStatic,
		Upstream:            "127.0.0.1:8",
		StaticAuthorization: `Bearer x"; return 200 "`,
	})
	if err == nil || !strings.Contains(err.Error(), "StaticAuthorization") {
		t.Fatalf("StartNginx error = %v, want one naming StaticAuthorization", err)
	}
	if strings.Contains(err.Error(), "Bearer") {
		t.Errorf("error %q shows the header value", err)
	}
}

func TestServiceConfigTemplate(t *testing.T) {
	data := serviceTemplateData{
		ServiceConfig: withServiceDefaults(ServiceConfig{
			Cluster:    "protected-orthanc",
			Hosts:      []string{"127.0.0.1:1", "127.0.0.1:2"},
			TokenURL:   "http://127.0.0.1:3/token",
			ClientID:   `id with "quotes"`,
			Scopes:     []string{"dicom.read", "dicom.write"},
			AuthMethod: "client_secret_post",
			Audience:   "https://dicom.example.test",
		}),
		GRPCAddr:   "127.0.0.1:4",
		HTTPAddr:   "127.0.0.1:5",
		AdminAddr:  "127.0.0.1:6",
		SecretFile: "/tmp/secret",
	}
	path := filepath.Join(t.TempDir(), "config.yaml")

	if err := writeTemplate(path, serviceConfigTemplate, data); err != nil {
		t.Fatalf("render: %v", err)
	}
	raw, _ := os.ReadFile(path)
	config := string(raw)

	wants := []string{
		`  http: "127.0.0.1:5"`,
		`  level: "debug"`,
		`  "protected-orthanc":`,
		`    hosts: ["127.0.0.1:1", "127.0.0.1:2"]`,
		`      client_id: "id with \"quotes\""`,
		`      client_secret_file: "/tmp/secret"`,
		`      scopes: ["dicom.read", "dicom.write"]`,
		`      auth_method: "client_secret_post"`,
		`      refresh_before: "5m"`,
	}
	for _, want := range wants {
		if !strings.Contains(config, want+"\n") {
			t.Errorf("configuration lacks line %q:\n%s", want, config)
		}
	}
	if strings.Contains(config, "client_secret:") {
		t.Error("configuration contains an inline client_secret")
	}
}
