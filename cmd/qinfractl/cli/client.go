package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// maxResponseBytes bounds what the CLI reads from the server; the largest
// legitimate answer, a page of 10,000 inventory items, is far below it.
const maxResponseBytes = 256 << 20

// client calls the REST API.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// apiError is an error response from the server.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.message, e.code, e.status)
}

// client builds the API client from the global flags.
func (c *cli) client() (*client, error) {
	u, err := url.Parse(c.g.server)
	if err != nil || u.Host == "" {
		return nil, usagef("--server %q is not a URL such as %s", c.g.server, defaultServer)
	}
	// The API token is a bearer secret: it must never cross the network in
	// clear text, so plain http is refused rather than merely discouraged.
	if u.Scheme != "https" {
		return nil, usagef("--server must be an https:// URL, not %q", c.g.server)
	}
	if c.g.token == "" {
		return nil, usagef("no API token: pass --token or set QINFRA_TOKEN")
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.g.caFile != "" {
		pemBytes, err := os.ReadFile(c.g.caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", c.g.caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return &client{
		base:  u,
		token: c.g.token,
		http:  &http.Client{Transport: tr, Timeout: time.Minute},
	}, nil
}

// call sends a request and decodes a successful JSON response into out
// (skipped when out is nil). A JSON error response becomes an *apiError.
func (cl *client) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := cl.base.JoinPath(path)
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return &apiError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
		}
		// Not our server's error shape: a proxy, a wrong --server.
		return &apiError{status: resp.StatusCode, code: "http", message: fmt.Sprintf("%s %s: %s: %s",
			method, path, resp.Status, strings.TrimSpace(clean(string(data[:min(len(data), 200)]))))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}
