// Package orthanc is a small client for the parts of the Orthanc REST API
// (Orthanc 1.10, DICOMweb plugin 1.7) that the end-to-end tests use: upload,
// lookup and deletion of instances, and the DICOMweb client routes under
// /dicom-web/servers/{name}/ that make Orthanc call a remote DICOMweb server.
package orthanc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody caps how much of an error response is kept in an HTTPError.
const maxErrorBody = 4 << 10

// HTTPError is an Orthanc response with a status code other than 2xx.
type HTTPError struct {
	Method string
	Path   string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("orthanc: %s %s: status %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// Client calls one Orthanc server. It is safe for concurrent use.
type Client struct {
	baseURL string
	http    *http.Client
}

// NewClient returns a client for the Orthanc REST API at baseURL, for example
// "http://127.0.0.1:8042". The client ignores proxy settings in the
// environment and gives each request the given timeout.
func NewClient(baseURL string, timeout time.Duration) *Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	return &Client{
		baseURL: strings.TrimSuffix(baseURL, "/"),
		http:    &http.Client{Transport: transport, Timeout: timeout},
	}
}

// BaseURL returns the URL the client calls.
func (c *Client) BaseURL() string { return c.baseURL }

// do sends a request and decodes the JSON response into out, unless out is nil.
func (c *Client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	response, err := c.send(ctx, method, path, contentType, body)
	if err != nil {
		return err
	}
	defer response.Body.Close()

	if out == nil {
		_, err = io.Copy(io.Discard, response.Body)
		return err
	}
	if err := json.NewDecoder(response.Body).Decode(out); err != nil {
		return fmt.Errorf("orthanc: decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns the response if its status is 2xx, and
// an *HTTPError otherwise. The caller closes the response body.
func (c *Client) send(ctx context.Context, method, path, contentType string,
	body io.Reader) (*http.Response, error) {
	request, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("orthanc: build %s %s: %w", method, path, err)
	}
	if contentType != "" {
		request.Header.Set("Content-Type", contentType)
	}

	response, err := c.http.Do(request)
	if err != nil {
		return nil, fmt.Errorf("orthanc: %s %s: %w", method, path, err)
	}
	if response.StatusCode < 200 || response.StatusCode > 299 {
		defer response.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(response.Body, maxErrorBody))
		return nil, &HTTPError{Method: method, Path: path, Status: response.StatusCode, Body: string(raw)}
	}
	return response, nil
}

func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	encoded, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("orthanc: encode body of %s: %w", path, err)
	}
	return c.do(ctx, http.MethodPost, path, "application/json", bytes.NewReader(encoded), out)
}

// System returns the response to GET /system, which Orthanc serves once it is up.
func (c *Client) System(ctx context.Context) (map[string]any, error) {
	var system map[string]any
	err := c.do(ctx, http.MethodGet, "/system", "", nil, &system)
	return system, err
}

// UploadResult is the response to POST /instances.
type UploadResult struct {
	ID          string `json:"ID"`
	ParentStudy string `json:"ParentStudy"`
	Status      string `json:"Status"` // "Success" or "AlreadyStored"
}

// Upload stores one DICOM file (Part 10 bytes) with POST /instances.
func (c *Client) Upload(ctx context.Context, dicom []byte) (UploadResult, error) {
	var result UploadResult
	err := c.do(ctx, http.MethodPost, "/instances", "application/dicom", bytes.NewReader(dicom), &result)
	return result, err
}

// CopyFile writes the stored DICOM file of an instance, from
// GET /instances/{id}/file, to w and returns the number of bytes written.
func (c *Client) CopyFile(ctx context.Context, id string, w io.Writer) (int64, error) {
	path := "/instances/" + id + "/file"
	response, err := c.send(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return 0, err
	}
	defer response.Body.Close()

	n, err := io.Copy(w, response.Body)
	if err != nil {
		return n, fmt.Errorf("orthanc: read answer of GET %s: %w", path, err)
	}
	return n, nil
}

// Instances returns the Orthanc IDs of all stored instances.
func (c *Client) Instances(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.do(ctx, http.MethodGet, "/instances", "", nil, &ids)
	return ids, err
}

// Tags returns the tags of an instance by keyword, from
// GET /instances/{id}/simplified-tags. Sequences are left out.
func (c *Client) Tags(ctx context.Context, id string) (map[string]string, error) {
	var raw map[string]any
	if err := c.do(ctx, http.MethodGet, "/instances/"+id+"/simplified-tags", "", nil, &raw); err != nil {
		return nil, err
	}
	tags := make(map[string]string, len(raw))
	for keyword, value := range raw {
		if text, ok := value.(string); ok {
			tags[keyword] = text
		}
	}
	return tags, nil
}

// FindInstance returns the Orthanc IDs of the instances with the given
// SOP Instance UID: none, or one.
func (c *Client) FindInstance(ctx context.Context, sopInstanceUID string) ([]string, error) {
	query := map[string]any{
		"Level": "Instance",
		"Query": map[string]string{"SOPInstanceUID": sopInstanceUID},
	}
	var ids []string
	err := c.postJSON(ctx, "/tools/find", query, &ids)
	return ids, err
}

// DeleteInstance deletes an instance. Orthanc also deletes its series,
// study and patient when they become empty.
func (c *Client) DeleteInstance(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/instances/"+id, "", nil, nil)
}

// DeleteStudy deletes a study and everything in it.
func (c *Client) DeleteStudy(ctx context.Context, studyID string) error {
	return c.do(ctx, http.MethodDelete, "/studies/"+studyID, "", nil, nil)
}

// Stow makes Orthanc send the given resources (Orthanc IDs of patients,
// studies, series or instances) to the DICOMweb server with STOW-RS, and
// returns the number of instances that Orthanc reports as sent.
func (c *Client) Stow(ctx context.Context, server string, resources []string) (int, error) {
	var answer struct {
		InstancesCount string `json:"InstancesCount"`
	}
	body := map[string]any{"Resources": resources}
	if err := c.postJSON(ctx, "/dicom-web/servers/"+server+"/stow", body, &answer); err != nil {
		return 0, err
	}
	return parseCount("InstancesCount", answer.InstancesCount)
}

// QIDO makes Orthanc run a QIDO-RS query on the DICOMweb server and returns
// the matches in the DICOM JSON model.
func (c *Client) QIDO(ctx context.Context, server, uri string) ([]map[string]any, error) {
	var matches []map[string]any
	err := c.postJSON(ctx, "/dicom-web/servers/"+server+"/qido", map[string]string{"Uri": uri}, &matches)
	return matches, err
}

// RetrieveStudy makes Orthanc fetch a study from the DICOMweb server with
// WADO-RS and store it, and returns the number of instances Orthanc received.
func (c *Client) RetrieveStudy(ctx context.Context, server, studyInstanceUID string) (int, error) {
	var answer struct {
		ReceivedInstancesCount string `json:"ReceivedInstancesCount"`
	}
	body := map[string]any{
		"Resources": []map[string]string{{"Study": studyInstanceUID}},
	}
	if err := c.postJSON(ctx, "/dicom-web/servers/"+server+"/retrieve", body, &answer); err != nil {
		return 0, err
	}
	return parseCount("ReceivedInstancesCount", answer.ReceivedInstancesCount)
}

// Get makes Orthanc send a GET request to the DICOMweb server, for example
// for "/studies/{uid}/metadata", and decodes the JSON answer into out.
func (c *Client) Get(ctx context.Context, server, uri string, out any) error {
	return c.postJSON(ctx, "/dicom-web/servers/"+server+"/get", map[string]string{"Uri": uri}, out)
}

// parseCount reads a count that Orthanc 1.10 sends as a JSON string.
func parseCount(field, value string) (int, error) {
	count, err := strconv.Atoi(value)
	if err != nil {
		return 0, fmt.Errorf("orthanc: invalid %s %q: %w", field, value, err)
	}
	return count, nil
}
