package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

// conn is one live agent stream.
type conn struct {
	hostID string
	out    chan *agentv1.ConnectResponse

	once   sync.Once
	done   chan struct{}
	reason error

	// cfgMu orders this stream's configuration messages with sentPaths,
	// the baseline paths of the last one queued (valid with pathsSent), so
	// an unchanged list is not sent again.
	cfgMu     sync.Mutex
	sentPaths []string
	pathsSent bool
}

func newConn(hostID string) *conn {
	return &conn{hostID: hostID, out: make(chan *agentv1.ConnectResponse, 64), done: make(chan struct{})}
}

// close ends the stream with err as the status the agent sees.
func (c *conn) close(err error) {
	c.once.Do(func() {
		c.reason = err
		close(c.done)
	})
}

// send queues a message; it fails rather than blocks when the agent does
// not read, so one stuck agent cannot stall the caller.
func (c *conn) send(m *agentv1.ConnectResponse) error {
	select {
	case c.out <- m:
		return nil
	case <-c.done:
		return fmt.Errorf("stream to %s is closed", c.hostID)
	default:
		return fmt.Errorf("stream to %s is backlogged", c.hostID)
	}
}

// Connect serves one agent's stream: Hello first, then inventories,
// command results, heartbeats and renewals until either side ends it.
func (s *Service) Connect(stream agentv1.AgentService_ConnectServer) error {
	ctx := stream.Context()
	hostID := hostIDFrom(ctx)
	if hostID == "" {
		return status.Error(codes.Unauthenticated, "no host identity")
	}

	hello, err := s.recvHello(stream)
	if err != nil {
		s.log.Warn("stream refused", "host", hostID, "err", err)
		return err
	}

	c := newConn(hostID)
	s.mu.Lock()
	if old := s.live[hostID]; old != nil {
		// The newest stream wins: an agent that reconnects after a network
		// split must not wait for the old stream's keepalive to expire.
		old.close(status.Error(codes.Aborted, "replaced by a newer stream from the same host"))
	}
	s.live[hostID] = c
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.live[hostID] == c {
			delete(s.live, hostID)
		}
		s.mu.Unlock()
	}()

	now := s.opts.Now().UTC()
	if err := s.store.UpdateHost(ctx, hostID, func(h *store.Host) error {
		h.LastSeen = now
		h.AgentVersion = hello.GetAgentVersion()
		if hello.GetFacts() != nil {
			h.Facts = hello.GetFacts()
			if hn := cleanHostname(hello.GetFacts().GetHostname()); hn != "" {
				h.Hostname = hn
			}
		}
		return nil
	}); err != nil {
		s.log.Error("update host on hello", "host", hostID, "err", err)
		return status.Error(codes.Unavailable, "store unavailable")
	}

	st, err := s.store.GetStreamState(ctx, hostID)
	if err != nil {
		s.log.Error("stream state", "host", hostID, "err", err)
		return status.Error(codes.Unavailable, "store unavailable")
	}
	welcome := &agentv1.Welcome{HostId: hostID, Config: s.welcomeConfig(ctx, c)}
	if st.SpoolID == hello.GetSpoolId() {
		welcome.LastAppliedSeq = st.LastSeq
		welcome.NeedFull = st.NeedsFull || st.Items == 0
	} else {
		welcome.NeedFull = true
	}
	if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	s.log.Info("agent connected", "host", hostID, "version", hello.GetAgentVersion(),
		"last_applied", welcome.LastAppliedSeq, "need_full", welcome.NeedFull)

	sess := &session{svc: s, c: c, hostID: hostID, spoolID: hello.GetSpoolId(), resyncAsked: welcome.NeedFull}
	// Commands queued while the host was away (or on another replica's
	// watch) go out right after the Welcome.
	go s.deliverCommands(ctx, hostID)
	// Two goroutines per stream: this one sends, the one below receives
	// and handles each message. Whichever ends first closes c, which ends
	// the other (returning from here cancels the stream, so a pending Recv
	// fails). An idle agent costs the server memory mostly in goroutine
	// stacks, so a third goroutine per stream is worth avoiding.
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					s.log.Info("agent disconnected", "host", hostID)
					err = nil
				}
				c.close(err)
				return
			}
			if err := sess.handle(ctx, m); err != nil {
				s.log.Warn("stream ended", "host", hostID, "err", err)
				c.close(err)
				return
			}
		}
	}()
	for {
		select {
		case <-c.done:
			return c.reason
		case m := <-c.out:
			if err := stream.Send(m); err != nil {
				c.close(err)
				return err
			}
		}
	}
}

func (s *Service) recvHello(stream agentv1.AgentService_ConnectServer) (*agentv1.Hello, error) {
	hostID := hostIDFrom(stream.Context())
	type result struct {
		m   *agentv1.ConnectRequest
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := stream.Recv()
		ch <- result{m, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(s.opts.HelloTimeout):
		return nil, status.Error(codes.DeadlineExceeded, "no Hello within the timeout")
	}
	if r.err != nil {
		return nil, r.err
	}
	hello := r.m.GetHello()
	if hello == nil {
		return nil, status.Error(codes.InvalidArgument, "the first message on a stream must be Hello")
	}
	if claimed := hello.GetHostId(); claimed != "" && claimed != hostID {
		return nil, status.Errorf(codes.PermissionDenied, "hello claims host %q but the certificate is for %q", claimed, hostID)
	}
	if len(hello.GetSpoolId()) > 128 {
		return nil, status.Error(codes.InvalidArgument, "spool id longer than 128 bytes")
	}
	return hello, nil
}

// session is the per-stream state of the receive loop.
type session struct {
	svc     *Service
	c       *conn
	hostID  string
	spoolID string
	// resyncAsked suppresses repeated resync requests until a full
	// inventory arrives.
	resyncAsked bool
	lastSeen    time.Time
}

func (ss *session) handle(ctx context.Context, m *agentv1.ConnectRequest) error {
	switch msg := m.Msg.(type) {
	case *agentv1.ConnectRequest_Inventory:
		return ss.inventory(ctx, msg.Inventory)
	case *agentv1.ConnectRequest_CommandResult:
		return ss.commandResult(ctx, msg.CommandResult)
	case *agentv1.ConnectRequest_Heartbeat:
		return ss.touch(ctx)
	case *agentv1.ConnectRequest_Renew:
		return ss.renew(ctx, msg.Renew)
	case *agentv1.ConnectRequest_Hello:
		return status.Error(codes.InvalidArgument, "Hello sent twice on one stream")
	default:
		return status.Error(codes.InvalidArgument, "empty or unknown message")
	}
}

func (ss *session) ack(seq uint64) error {
	return ss.c.send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Ack{Ack: &agentv1.Ack{Seq: seq}}})
}

func (ss *session) resync(reason string) error {
	if ss.resyncAsked {
		return nil
	}
	ss.resyncAsked = true
	ss.svc.log.Info("resync requested", "host", ss.hostID, "reason", reason)
	return ss.c.send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Resync{Resync: &agentv1.ResyncRequest{Reason: reason}}})
}

// touch records that the host was seen, at most every few seconds so a
// chatty agent does not turn into a write per message.
func (ss *session) touch(ctx context.Context) error {
	now := ss.svc.opts.Now()
	if now.Sub(ss.lastSeen) < 5*time.Second {
		return nil
	}
	ss.lastSeen = now
	err := ss.svc.store.UpdateHost(ctx, ss.hostID, func(h *store.Host) error {
		h.LastSeen = now.UTC()
		return nil
	})
	if err != nil {
		return status.Error(codes.Unavailable, "store unavailable")
	}
	return nil
}

func (ss *session) inventory(ctx context.Context, inv *agentv1.Inventory) error {
	s := ss.svc
	if inv.GetSeq() == 0 {
		return status.Error(codes.InvalidArgument, "inventory without a sequence number")
	}
	if err := validateInventory(inv); err != nil {
		// The message is malformed but already spooled by the agent: ack it
		// so it is not resent forever, and ask for a full snapshot instead.
		s.log.Warn("malformed inventory", "host", ss.hostID, "seq", inv.GetSeq(), "err", err)
		if err := ss.ack(inv.GetSeq()); err != nil {
			return err
		}
		ss.resyncAsked = false
		return ss.resync("malformed inventory: " + err.Error())
	}
	u := &store.InventoryUpdate{
		HostID:     ss.hostID,
		SpoolID:    ss.spoolID,
		Seq:        inv.GetSeq(),
		Full:       inv.GetFull(),
		Upserts:    inv.GetItems(),
		SetHash:    inv.GetSetHash(),
		ReceivedAt: s.opts.Now().UTC(),
	}
	if inv.GetCollectedAt() != nil {
		u.CollectedAt = inv.GetCollectedAt().AsTime()
	}
	for _, r := range inv.GetRemoved() {
		u.Removed = append(u.Removed, inventory.Ref{Kind: r.GetKind(), Key: r.GetKey()})
	}
	out, err := s.store.ApplyInventory(ctx, u)
	if err != nil {
		s.log.Error("apply inventory", "host", ss.hostID, "seq", inv.GetSeq(), "err", err)
		// Not acked: the agent keeps it and sends it again.
		return status.Error(codes.Unavailable, "store unavailable")
	}
	s.log.Debug("inventory", "host", ss.hostID, "seq", inv.GetSeq(), "full", inv.GetFull(),
		"items", len(inv.GetItems()), "removed", len(inv.GetRemoved()), "outcome", out.String())
	if inv.GetDropped() > 0 {
		s.log.Warn("agent spool dropped messages", "host", ss.hostID, "dropped", inv.GetDropped())
	}
	if err := ss.ack(inv.GetSeq()); err != nil {
		return err
	}
	switch out {
	case store.Applied:
		if inv.GetFull() {
			ss.resyncAsked = false
		}
		if s.opts.OnInventory != nil {
			s.opts.OnInventory(ctx, ss.hostID, u.Full, changedRefs(u))
		}
		return ss.touch(ctx)
	case store.HashMismatch:
		if inv.GetFull() {
			ss.resyncAsked = false
		}
		return ss.resync("set hash mismatch after applying inventory")
	case store.NeedsFull:
		return ss.resync("a full inventory is needed")
	}
	return nil
}

// changedRefs lists the refs a delta upserts or removes; nil for a full
// inventory.
func changedRefs(u *store.InventoryUpdate) []inventory.Ref {
	if u.Full {
		return nil
	}
	refs := make([]inventory.Ref, 0, len(u.Upserts)+len(u.Removed))
	for _, it := range u.Upserts {
		refs = append(refs, inventory.RefOf(it))
	}
	return append(refs, u.Removed...)
}

func validateInventory(inv *agentv1.Inventory) error {
	if len(inv.GetItems()) > maxItems {
		return fmt.Errorf("%d items, more than %d", len(inv.GetItems()), maxItems)
	}
	if len(inv.GetSetHash()) != 32 {
		return fmt.Errorf("set hash is %d bytes, want 32", len(inv.GetSetHash()))
	}
	if inv.GetFull() && len(inv.GetRemoved()) > 0 {
		return errors.New("a full inventory cannot remove items")
	}
	seen := make(map[inventory.Ref]struct{}, len(inv.GetItems()))
	for _, it := range inv.GetItems() {
		if err := inventory.Validate(it); err != nil {
			return err
		}
		r := inventory.RefOf(it)
		if _, dup := seen[r]; dup {
			return fmt.Errorf("item %s appears twice", r)
		}
		seen[r] = struct{}{}
	}
	for _, r := range inv.GetRemoved() {
		if r.GetKey() == "" || r.GetKind() == "" {
			return errors.New("removal with an empty kind or key")
		}
	}
	return nil
}

func (ss *session) renew(ctx context.Context, req *agentv1.RenewRequest) error {
	s := ss.svc
	cert, err := s.ca.SignHostCSR(req.GetCsr(), ss.hostID, s.opts.CertTTL, s.opts.Now())
	resp := &agentv1.RenewResponse{}
	if err != nil {
		s.log.Warn("renewal refused", "host", ss.hostID, "err", err)
		resp.Error = err.Error()
	} else {
		resp.Certificate = cert.Raw
		if err := s.store.UpdateHost(ctx, ss.hostID, func(h *store.Host) error {
			h.CertSerial = cert.SerialNumber.Text(16)
			h.CertNotAfter = cert.NotAfter.UTC()
			return nil
		}); err != nil {
			return status.Error(codes.Unavailable, "store unavailable")
		}
		s.audit(ctx, "host:"+ss.hostID, "host.cert.renew", ss.hostID, fmt.Sprintf(`{"cert_serial":%q,"not_after":%q}`,
			cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339)))
		s.log.Info("certificate renewed", "host", ss.hostID, "not_after", cert.NotAfter)
	}
	return ss.c.send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Renew{Renew: resp}})
}
