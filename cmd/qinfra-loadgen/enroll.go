package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// loopbackHostPort checks that addr is host:port with a loopback IP
// address; the load generator never sends traffic anywhere else.
func loopbackHostPort(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback IP address (127.0.0.0/8 or ::1); refusing to generate load against it", addr)
	}
	return nil
}

// sourceAddrs returns n loopback source addresses 127.0.0.2, 127.0.0.3 ...,
// each with its own ephemeral port range towards the server.
func sourceAddrs(n int) ([]net.IP, error) {
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("source address count %d is not between 1 and 250", n)
	}
	out := make([]net.IP, n)
	for i := range out {
		out[i] = net.IPv4(127, 0, 0, byte(2+i))
	}
	return out, nil
}

// dialerFrom returns a gRPC context dialer binding to src.
func dialerFrom(src net.IP) func(context.Context, string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 20 * time.Second}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if err := loopbackHostPort(addr); err != nil {
			return nil, err
		}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// identity is one simulated agent's enrolled credentials.
type identity struct {
	hostID string
	cert   tls.Certificate
}

// certCache keeps issued credentials in dir/<CA fingerprint>/, one file per
// agent index, so a repeated run against the same server skips enrollment.
type certCache struct{ dir string }

func newCertCache(root string, ca *x509.Certificate) (*certCache, error) {
	if root == "" {
		return nil, nil
	}
	fp := strings.TrimPrefix(pki.Fingerprint(ca), "sha256:")
	fp = strings.ReplaceAll(fp, ":", "")
	dir := filepath.Join(root, fp[:min(16, len(fp))])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cert cache: %w", err)
	}
	return &certCache{dir: dir}, nil
}

func (c *certCache) path(i int) string { return filepath.Join(c.dir, fmt.Sprintf("agent-%07d.pem", i)) }

// load returns the cached identity of agent i, or nil.
func (c *certCache) load(i int) *identity {
	if c == nil {
		return nil
	}
	b, err := os.ReadFile(c.path(i))
	if err != nil {
		return nil
	}
	id, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return nil
	}
	cert, err := tls.X509KeyPair(rest, rest)
	if err != nil || cert.Leaf == nil || time.Until(cert.Leaf.NotAfter) < time.Hour {
		return nil
	}
	return &identity{hostID: string(id), cert: cert}
}

func (c *certCache) store(i int, hostID string, certPEM, keyPEM []byte) error {
	if c == nil {
		return nil
	}
	b := append(append(append([]byte(hostID+"\n"), certPEM...), keyPEM...), '\n')
	return os.WriteFile(c.path(i), b, 0o600)
}

// enroller runs real enrollments through AgentService.Enroll.
type enroller struct {
	clients []agentv1.AgentServiceClient
	conns   []*grpc.ClientConn
	cache   *certCache
	tokens  []string
	perTok  int

	enrolled, cached atomic.Int64
	latency          Histogram
}

// newEnroller dials one enrollment connection per source address, each
// trusting the server only through the pinned CA fingerprint, as an agent
// does at install time.
func newEnroller(grpcAddr string, ca *x509.Certificate, srcs []net.IP, cache *certCache, tokens []string, perToken int) (*enroller, error) {
	pin, err := pki.ParseFingerprint(pki.Fingerprint(ca))
	if err != nil {
		return nil, err
	}
	e := &enroller{cache: cache, tokens: tokens, perTok: perToken}
	for _, src := range srcs {
		cc, err := grpc.NewClient("passthrough:///"+grpcAddr,
			grpc.WithTransportCredentials(credentials.NewTLS(pki.PinnedTLSConfig(pin, ""))),
			grpc.WithContextDialer(dialerFrom(src)))
		if err != nil {
			e.close()
			return nil, fmt.Errorf("dial %s: %w", grpcAddr, err)
		}
		e.conns = append(e.conns, cc)
		e.clients = append(e.clients, agentv1.NewAgentServiceClient(cc))
	}
	return e, nil
}

func (e *enroller) close() {
	for _, cc := range e.conns {
		cc.Close()
	}
}

// identities returns the credentials of agents [from, to): cached ones
// when present, others enrolled with at most conc enrollments in flight.
func (e *enroller) identities(ctx context.Context, from, to, conc int) ([]*identity, error) {
	out := make([]*identity, to-from)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
	for i := from; i < to && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if id := e.cache.load(i); id != nil {
				out[i-from] = id
				e.cached.Add(1)
				return
			}
			id, err := e.enroll(ctx, i)
			if err != nil {
				cancel(fmt.Errorf("enroll agent %d: %w", i, err))
				return
			}
			out[i-from] = id
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *enroller) enroll(ctx context.Context, i int) (*identity, error) {
	keyPEM, csr, err := pki.NewKeyAndCSR()
	if err != nil {
		return nil, err
	}
	token := e.tokens[min(i/e.perTok, len(e.tokens)-1)]
	hostname := fmt.Sprintf("sim-%06d", i)
	req := &agentv1.EnrollRequest{Token: token, Csr: csr, Hostname: hostname,
		Facts: &commonv1.OSFacts{Hostname: hostname, Os: "linux", KernelArch: "x86_64"}}
	var resp *agentv1.EnrollResponse
	start := time.Now()
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err = e.clients[i%len(e.clients)].Enroll(cctx, req)
		cancel()
		if err == nil || attempt == 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	e.latency.Observe(time.Since(start))
	certPEM := pki.CertPEM(resp.GetCertificate())
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if err := e.cache.store(i, resp.GetHostId(), certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("cache certificate: %w", err)
	}
	e.enrolled.Add(1)
	return &identity{hostID: resp.GetHostId(), cert: cert}, nil
}

// loadCA reads the server's CA certificate (PEM).
func loadCA(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := pki.ParseCertPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
