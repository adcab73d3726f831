package orthanc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// fakeOrthanc serves the DICOMweb client routes the way Orthanc 1.10 with
// DICOMweb 1.7 does, with counts as JSON strings, and records request bodies.
func fakeOrthanc(t *testing.T, bodies map[string]string) *Client {
	t.Helper()
	mux := http.NewServeMux()
	record := func(r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		bodies[r.URL.Path] = string(raw)
	}
	mux.HandleFunc("POST /dicom-web/servers/good/stow", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		_, _ = io.WriteString(w, `{"InstancesCount":"2","NetworkSizeMB":"0"}`)
	})
	mux.HandleFunc("POST /dicom-web/servers/bad/stow", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"Message":"Error encountered within the plugin engine"}`)
	})
	mux.HandleFunc("POST /dicom-web/servers/good/retrieve", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		_, _ = io.WriteString(w, `{"NetworkUsageMB":"0","ReceivedInstancesCount":"1"}`)
	})
	mux.HandleFunc("GET /instances/present/file", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "DICM file content")
	})
	mux.HandleFunc("DELETE /instances/present", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "{}")
	})
	mux.HandleFunc("POST /dicom-web/servers/odd/retrieve", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ReceivedInstancesCount":"many"}`)
	})
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	return NewClient(server.URL, 5*time.Second)
}

func TestStow(t *testing.T) {
	bodies := map[string]string{}
	client := fakeOrthanc(t, bodies)
	tests := []struct {
		name       string
		server     string
		wantCount  int
		wantStatus int // 0 means success
	}{
		{"success", "good", 2, 0},
		{"plugin error", "bad", 0, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			count, err := client.Stow(context.Background(), tt.server, []string{"id-1", "id-2"})

			var httpErr *HTTPError
			switch {
			case tt.wantStatus == 0 && err != nil:
				t.Fatalf("Stow: %v", err)
			case tt.wantStatus != 0 && !errors.As(err, &httpErr):
				t.Fatalf("Stow error = %v, want an HTTPError", err)
			case tt.wantStatus != 0 && httpErr.Status != tt.wantStatus:
				t.Errorf("status = %d, want %d", httpErr.Status, tt.wantStatus)
			}
			if count != tt.wantCount {
				t.Errorf("count = %d, want %d", count, tt.wantCount)
			}
			var body struct{ Resources []string }
			if err := json.Unmarshal([]byte(bodies["/dicom-web/servers/"+tt.server+"/stow"]), &body); err != nil {
				t.Fatalf("request body is not JSON: %v", err)
			}
			if len(body.Resources) != 2 || body.Resources[0] != "id-1" {
				t.Errorf("Resources = %v, want [id-1 id-2]", body.Resources)
			}
		})
	}
}

func TestRetrieveStudy(t *testing.T) {
	bodies := map[string]string{}
	client := fakeOrthanc(t, bodies)
	tests := []struct {
		name      string
		server    string
		wantCount int
		wantErr   bool
	}{
		{"success", "good", 1, false},
		{"count not a number", "odd", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			count, err := client.RetrieveStudy(context.Background(), tt.server, "1.2.3")

			if (err != nil) != tt.wantErr {
				t.Fatalf("RetrieveStudy error = %v, want error = %v", err, tt.wantErr)
			}
			if count != tt.wantCount {
				t.Errorf("count = %d, want %d", count, tt.wantCount)
			}
		})
	}
	if want := `{"Resources":[{"Study":"1.2.3"}]}`; bodies["/dicom-web/servers/good/retrieve"] != want {
		t.Errorf("request body = %s, want %s", bodies["/dicom-web/servers/good/retrieve"], want)
	}
}

func TestCopyFile(t *testing.T) {
	client := fakeOrthanc(t, map[string]string{})
	tests := []struct {
		name       string
		id         string
		wantBody   string
		wantStatus int // 0 means success
	}{
		{"stored instance", "present", "DICM file content", 0},
		{"unknown instance", "absent", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			n, err := client.CopyFile(context.Background(), tt.id, &b)

			var httpErr *HTTPError
			switch {
			case tt.wantStatus == 0 && err != nil:
				t.Fatalf("CopyFile: %v", err)
			case tt.wantStatus != 0 && !errors.As(err, &httpErr):
				t.Fatalf("CopyFile error = %v, want an HTTPError", err)
			case tt.wantStatus != 0 && httpErr.Status != tt.wantStatus:
				t.Errorf("status = %d, want %d", httpErr.Status, tt.wantStatus)
			}
			if b.String() != tt.wantBody {
				t.Errorf("written = %q, want %q", b.String(), tt.wantBody)
			}
			if n != int64(len(tt.wantBody)) {
				t.Errorf("count = %d, want %d", n, len(tt.wantBody))
			}
		})
	}
}

func TestDeleteInstance(t *testing.T) {
	client := fakeOrthanc(t, map[string]string{})
	tests := []struct {
		name       string
		id         string
		wantStatus int // 0 means success
	}{
		{"stored instance", "present", 0},
		{"unknown instance", "absent", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := client.DeleteInstance(context.Background(), tt.id)

			var httpErr *HTTPError
			switch {
			case tt.wantStatus == 0 && err != nil:
				t.Fatalf("DeleteInstance: %v", err)
			case tt.wantStatus != 0 && !errors.As(err, &httpErr):
				t.Fatalf("DeleteInstance error = %v, want an HTTPError", err)
			case tt.wantStatus != 0 && httpErr.Status != tt.wantStatus:
				t.Errorf("status = %d, want %d", httpErr.Status, tt.wantStatus)
			}
		})
	}
}
