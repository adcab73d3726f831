package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		body = normalizeExpiresIn(body)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// normalizeExpiresIn rewrites a JSON expires_in that is a string or a
// fraction as whole seconds, because x/oauth2 rejects the whole response
// otherwise; an empty string is removed, as if the field were missing.
func normalizeExpiresIn(body []byte) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return body
	}
	raw, ok := fields["expires_in"]
	if !ok {
		return body
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return body
	}
	seconds, present, err := parseExpiresIn(v)
	switch {
	case err != nil:
		return body
	case !present:
		delete(fields, "expires_in")
	default:
		fields["expires_in"] = json.RawMessage(strconv.FormatInt(seconds, 10))
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return body
	}
	return out
}
