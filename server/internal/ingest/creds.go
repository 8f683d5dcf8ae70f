package ingest

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// loggingCreds logs refused TLS handshakes (a certificate from another
// CA, an expired one, a TLS 1.2 client). gRPC drops them silently, and an
// operator debugging an agent that cannot connect needs the reason. During
// a flood the log is limited to one line per second with a count.
type loggingCreds struct {
	credentials.TransportCredentials
	log *slog.Logger

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (c *loggingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.mu.Lock()
		now := time.Now()
		if now.Sub(c.last) >= time.Second {
			c.log.Warn("TLS handshake refused", "remote", raw.RemoteAddr().String(), "err", err, "suppressed_since_last", c.suppressed)
			c.last, c.suppressed = now, 0
		} else {
			c.suppressed++
		}
		c.mu.Unlock()
	}
	return conn, info, err
}

func (c *loggingCreds) Clone() credentials.TransportCredentials {
	return &loggingCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}
