package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/dicomweb-oauth/dicomweb-oauth/e2e/orthanc"
)

// Locations of the Debian packages orthanc and orthanc-dicomweb.
const (
	orthancPath       = "/usr/sbin/Orthanc"
	dicomWebPluginDir = "/usr/share/orthanc/plugins"
	dicomWebPlugin    = dicomWebPluginDir + "/libOrthancDicomWeb.so"
)

// orthancRequestTimeout bounds each REST call to Orthanc. A STOW-RS or
// WADO-RS call through the chain of proxies is one such call.
const orthancRequestTimeout = 60 * time.Second

// FindOrthanc returns the Orthanc binary and the DICOMweb plugin, or an error
// that names what is missing.
func FindOrthanc() (binary, plugin string, err error) {
	binary, err = exec.LookPath("Orthanc")
	if err != nil {
		binary = orthancPath
	}
	if _, err := os.Stat(binary); err != nil {
		return "", "", fmt.Errorf("orthanc binary not found in PATH or at %s (Debian package orthanc)", orthancPath)
	}
	if _, err := os.Stat(dicomWebPlugin); err != nil {
		return "", "", fmt.Errorf("DICOMweb plugin %s not found (Debian package orthanc-dicomweb)", dicomWebPlugin)
	}
	return binary, dicomWebPlugin, nil
}

// DicomWebServer is an entry of the DicomWeb.Servers option: a remote
// DICOMweb server that Orthanc can call.
type DicomWebServer struct {
	URL string `json:"Url"`
	// ChunkedTransfers sets whether STOW-RS bodies are sent with chunked
	// transfer encoding. Nil leaves the plugin's default.
	ChunkedTransfers *bool `json:"ChunkedTransfers,omitempty"`
}

// OrthancConfig sets what differs between the Orthanc servers of the chain.
type OrthancConfig struct {
	// Name labels the server, for example "a" or "b".
	Name string
	// DicomWebServers are the remote DICOMweb servers, by name.
	DicomWebServers map[string]DicomWebServer
	// Verbose passes --verbose, which logs each remote DICOMweb call.
	Verbose bool
}

// Orthanc is a running Orthanc server.
type Orthanc struct {
	URL     string
	Client  *orthanc.Client
	Process *Process
}

// StartOrthanc writes a configuration into a new folder of the Env, starts
// Orthanc with it and waits until its REST API responds.
//
// Orthanc 1.10 has no option for the address it binds to and listens on all
// interfaces, so the configuration sets RemoteAccessAllowed to false, which
// makes Orthanc reject every client but localhost, and disables the DICOM
// server.
func (e *Env) StartOrthanc(ctx context.Context, cfg OrthancConfig) (*Orthanc, error) {
	binary, plugin, err := FindOrthanc()
	if err != nil {
		return nil, err
	}
	name := "orthanc-" + cfg.Name
	dir, err := e.MakeDir(name)
	if err != nil {
		return nil, err
	}
	addrs, err := FreeAddrs(2)
	if err != nil {
		return nil, err
	}

	configPath := filepath.Join(dir, "orthanc.json")
	if err := writeOrthancConfig(configPath, dir, plugin, addrs, cfg); err != nil {
		return nil, err
	}
	args := []string{configPath}
	if cfg.Verbose {
		args = append([]string{"--verbose"}, args...)
	}

	p, err := e.Start(ProcessSpec{Name: name, Path: binary, Args: args, Dir: dir})
	if err != nil {
		return nil, err
	}
	baseURL := "http://" + addrs[0]
	if err := WaitHTTP(ctx, baseURL+"/system", 200, p); err != nil {
		return nil, err
	}
	return &Orthanc{
		URL:     baseURL,
		Client:  orthanc.NewClient(baseURL, orthancRequestTimeout),
		Process: p,
	}, nil
}

// writeOrthancConfig writes the JSON configuration. Every option used here
// exists in Orthanc 1.10.1 (see the output of "Orthanc --config=FILE").
func writeOrthancConfig(path, dir, plugin string, addrs []string, cfg OrthancConfig) error {
	httpPort, dicomPort := Port(addrs[0]), Port(addrs[1])
	if httpPort == "" || dicomPort == "" {
		return fmt.Errorf("harness: invalid Orthanc addresses %v", addrs)
	}
	servers := cfg.DicomWebServers
	if servers == nil {
		servers = map[string]DicomWebServer{}
	}
	config := map[string]any{
		"Name":             "e2e-" + cfg.Name,
		"StorageDirectory": filepath.Join(dir, "storage"),
		"IndexDirectory":   filepath.Join(dir, "index"),
		"HttpPort":         json.Number(httpPort),
		"DicomPort":        json.Number(dicomPort),
		// Orthanc listens on all interfaces: allow only localhost clients.
		"RemoteAccessAllowed":   false,
		"AuthenticationEnabled": false,
		"DicomServerEnabled":    false,
		"SaveJobs":              false,
		"HttpProxy":             "",
		"Plugins":               []string{plugin},
		"DicomWeb": map[string]any{
			"Enable":  true,
			"Root":    "/dicom-web/",
			"Servers": servers,
		},
	}

	encoded, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return fmt.Errorf("encode Orthanc configuration: %w", err)
	}
	if err := os.WriteFile(path, encoded, 0o600); err != nil {
		return fmt.Errorf("write Orthanc configuration: %w", err)
	}
	return nil
}
