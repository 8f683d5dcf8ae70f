// Package e2e runs the real binaries — qinfra-server, qinfra-agent and
// qinfractl — as separate processes talking over loopback, the way an
// operator would run them.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qinfra-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "../../agent/cmd/qinfra-agent", "../../server/cmd/qinfra-server", "../../cmd/qinfractl")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

// proc is a running binary with its combined output captured.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin(name), args...), done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin(name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// server is a qinfra-server process with an API client.
type server struct {
	t          *testing.T
	dir        string
	grpc, api  string
	token      string
	fp         string
	proc       *proc
	httpClient *http.Client
	extraArgs  []string
}

func newServer(t *testing.T, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dir: t.TempDir(), grpc: freePort(t), api: freePort(t)}
	out := run(t, "qinfra-server", "init", "--data", s.dir)
	s.fp = regexp.MustCompile(`CA fingerprint: (\S+)`).FindStringSubmatch(out)[1]
	s.token = regexp.MustCompile(`Admin API token[^:]*: (\S+)`).FindStringSubmatch(out)[1]
	s.httpClient = apiClient(t, s.dir)
	s.extraArgs = extra
	s.start()
	return s
}

// apiClient trusts the CA of the server data directory dir.
func apiClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (s *server) start() {
	s.t.Helper()
	args := append([]string{"serve", "--data", s.dir, "--grpc-addr", s.grpc, "--api-addr", s.api, "--log-level", "debug"}, s.extraArgs...)
	s.proc = start(s.t, "qinfra-server", args...)
	waitFor(s.t, 15*time.Second, "server ready", func() bool {
		resp, err := s.httpClient.Get("https://" + s.api + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// apiJSON calls the REST API and decodes the JSON answer into out.
func (s *server) apiJSON(method, path string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+s.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func (s *server) enrollmentToken(labels map[string]string) string {
	s.t.Helper()
	var r struct {
		Token string `json:"token"`
	}
	if code := s.apiJSON("POST", "/api/v1/enrollment-tokens", map[string]any{"uses": 1, "ttl": "10m", "labels": labels}, &r); code != 201 {
		s.t.Fatalf("create token: %d", code)
	}
	return r.Token
}

// serverItems returns the host's inventory as kind/key → item hash (hex).
func (s *server) serverItems(hostID string) map[string]string {
	s.t.Helper()
	var r struct {
		Items []map[string]any `json:"items"`
	}
	if code := s.apiJSON("GET", "/api/v1/hosts/"+hostID+"/inventory", nil, &r); code != 200 {
		s.t.Fatalf("inventory: %d", code)
	}
	out := map[string]string{}
	for _, it := range r.Items {
		out[fmt.Sprint(it["kind"])+"/"+fmt.Sprint(it["key"])] = fmt.Sprint(it["hash"])
	}
	return out
}

func (s *server) host(hostID string) map[string]any {
	s.t.Helper()
	var r map[string]any
	if code := s.apiJSON("GET", "/api/v1/hosts/"+hostID, nil, &r); code != 200 {
		s.t.Fatalf("host: %d", code)
	}
	if h, ok := r["host"].(map[string]any); ok {
		return h
	}
	return r
}

// agentState is an enrolled agent's state directory and config.
type agentState struct {
	dir, config, root string
	hostID            string
}

func enrollAgent(t *testing.T, s *server, root string, cfgExtra string) *agentState {
	t.Helper()
	a := &agentState{dir: t.TempDir(), root: root}
	a.config = filepath.Join(a.dir, "agent.yaml")
	cfg := fmt.Sprintf("state_dir: %s\nhost_root: %s\nscan_interval: 1s\nheartbeat_interval: 1s\nwatch_paths: [/etc/app/*.conf, /etc/passwd]\n%s", a.dir, root, cfgExtra)
	if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "qinfra-agent", "enroll", "--config", a.config, "--server", s.grpc, "--token", s.enrollmentToken(map[string]string{"env": "e2e"}), "--ca-fingerprint", s.fp)
	id, err := os.ReadFile(filepath.Join(a.dir, "host_id"))
	if err != nil {
		t.Fatal(err)
	}
	a.hostID = strings.TrimSpace(string(id))
	return a
}

func (a *agentState) run(t *testing.T) *proc {
	return start(t, "qinfra-agent", "run", "--config", a.config, "--log-level", "debug")
}

// snapshot runs 'qinfra-agent snapshot --json' on the agent's root and
// returns kind/key → item hash (hex), the agent's own view.
func (a *agentState) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command(bin("qinfra-agent"), "snapshot", "--config", a.config, "--json").Output()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	var r struct {
		Items []struct {
			Kind string `json:"kind"`
			Key  string `json:"key"`
			Hash string `json:"hash"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, it := range r.Items {
		b, err := base64.StdEncoding.DecodeString(it.Hash)
		if err != nil {
			t.Fatal(err)
		}
		m[it.Kind+"/"+it.Key] = hex.EncodeToString(b)
	}
	return m
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func diffMaps(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "only agent: "+k)
		} else if w != v {
			out = append(out, "differs: "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "only server: "+k)
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return strings.Join(out, "\n")
}

// waitInSync waits until the server holds exactly what the agent's own
// snapshot of its root says.
func waitInSync(t *testing.T, s *server, a *agentState, d time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(d)
	for {
		want := a.snapshot(t)
		got := s.serverItems(a.hostID)
		last = diffMaps(want, got)
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never matched the agent's snapshot:\n%s", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
