package main

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
	"strings"
	"time"
)

// apiClient talks to the server's REST API on loopback.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newAPIClient(base, token string, ca *x509.Certificate) (*apiClient, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("api url %q: want https://127.0.0.x:port", base)
	}
	if err := loopbackHostPort(u.Host); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   true,
	}
	return &apiClient{base: base, token: token, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}, nil
}

func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// maxTokenUses is the API's limit on one enrollment token's uses.
const maxTokenUses = 100000

// enrollmentTokens creates enough many-use tokens for n enrollments.
func (c *apiClient) enrollmentTokens(ctx context.Context, n int) ([]string, error) {
	var out []string
	for left := n; left > 0 || len(out) == 0; left -= maxTokenUses {
		uses := max(1, min(left, maxTokenUses))
		var resp struct {
			Token string `json:"token"`
		}
		req := map[string]any{"uses": uses, "ttl": "6h", "labels": map[string]string{"source": "loadgen"}, "description": "qinfra-loadgen"}
		if err := c.do(ctx, http.MethodPost, "/api/v1/enrollment-tokens", req, &resp); err != nil {
			return nil, err
		}
		out = append(out, resp.Token)
	}
	return out, nil
}

// runScript queues a run_script command for one host and returns its ID.
func (c *apiClient) runScript(ctx context.Context, hostID, body string) (string, error) {
	var resp struct {
		ID string `json:"id"`
	}
	req := map[string]any{"action": "run_script", "script": map[string]string{"body": body}}
	err := c.do(ctx, http.MethodPost, "/api/v1/hosts/"+url.PathEscape(hostID)+"/commands", req, &resp)
	return resp.ID, err
}

// fileSHA returns the sha256 the server holds for a file of the host.
func (c *apiClient) fileSHA(ctx context.Context, hostID, path string) (string, error) {
	var resp struct {
		Items []struct {
			Key  string `json:"key"`
			File struct {
				SHA256 string `json:"sha256"`
			} `json:"file"`
		} `json:"items"`
	}
	q := url.Values{"kind": {"file"}, "q": {path}, "limit": {"10"}}
	if err := c.do(ctx, http.MethodGet, "/api/v1/hosts/"+url.PathEscape(hostID)+"/inventory?"+q.Encode(), nil, &resp); err != nil {
		return "", err
	}
	for _, it := range resp.Items {
		if it.Key == path {
			return it.File.SHA256, nil
		}
	}
	return "", nil
}

// hotFileBaseline applies a baseline to every loadgen host (label
// source=loadgen) that expects the hot file at hotMode. It reports false
// when the server has no baselines.
func (c *apiClient) hotFileBaseline(ctx context.Context) (bool, error) {
	b := map[string]any{
		"name":        "qinfra-loadgen-hot-file",
		"description": "qinfra-loadgen: the simulated hosts' hot file keeps mode 0640",
		"selector":    map[string]string{"source": "loadgen"},
		"files":       []map[string]string{{"path": hotFile, "mode": fmt.Sprintf("%04o", hotMode)}},
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/baselines", b, nil)
	if err != nil && strings.Contains(err.Error(), "404") {
		return false, nil
	}
	return err == nil, err
}

// hotFileDrift reports whether the host has open drift on the hot file.
func (c *apiClient) hotFileDrift(ctx context.Context, hostID string) (bool, error) {
	var resp struct {
		Drift []struct {
			Kind       string `json:"kind"`
			Key        string `json:"key"`
			Rule       string `json:"rule"`
			ResolvedAt string `json:"resolved_at"`
		} `json:"drift"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/hosts/"+url.PathEscape(hostID)+"/drift", nil, &resp); err != nil {
		return false, err
	}
	for _, d := range resp.Drift {
		if d.Key == hotFile && d.Rule == "file.mode" && d.ResolvedAt == "" {
			return true, nil
		}
	}
	return false, nil
}
