package tokens

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
)

// maxResponseBytes is the largest token endpoint response body accepted.
const maxResponseBytes = 1 << 20

// responseRecord is what recordingTransport saw of the last token response.
type responseRecord struct {
	resp *http.Response
	body []byte
}

type recordKey struct{}

// withRecord returns a context whose token requests store their response in rec.
func withRecord(ctx context.Context, rec *responseRecord) context.Context {
	return context.WithValue(ctx, recordKey{}, rec)
}

// recordingTransport reads each response body whole, rejects one over
// maxResponseBytes, and keeps a copy for error messages. x/oauth2 silently
// truncates a body at 1 MiB, which would turn an oversized answer into a
// confusing parse error.
type recordingTransport struct {
	base http.RoundTripper
}

func (t recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the token response (HTTP %d): %w", resp.StatusCode, err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("%w: the token response body is larger than %d bytes (HTTP %d, %s)",
			ErrInvalidToken, maxResponseBytes, resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	if rec, ok := req.Context().Value(recordKey{}).(*responseRecord); ok {
		rec.resp = resp
		rec.body = body
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
