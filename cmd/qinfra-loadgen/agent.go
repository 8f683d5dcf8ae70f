package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/pkg/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Kinds of sequenced messages, for the ack latency histograms.
const (
	msgFull = iota
	msgDelta
	msgResult
	msgKinds
)

// fleet is what every simulated agent shares: the server, the templates
// and the measurements.
type fleet struct {
	grpcAddr  string
	ca        *x509.Certificate
	srcs      []net.IP
	templates []*template
	spoolID   string
	maxMsg    int

	ackLatency [msgKinds]Histogram
	// onCommand, when set, is told of every command an agent receives.
	onCommand atomic.Pointer[commandHook]

	mu                 sync.Mutex
	resyncs, streamErr int
	lastErr            error
}

func (f *fleet) streamFailed(err error) {
	f.mu.Lock()
	f.streamErr++
	f.lastErr = err
	f.mu.Unlock()
}

// commandHook is told of a command an agent received.
type commandHook = func(a *simAgent, cmd *agentv1.Command, at time.Time)

// pending is a sequenced message waiting for its Ack.
type pending struct {
	seq  uint64
	kind int
	sent time.Time
	done func(time.Time)
}

// simAgent is one simulated agent: its own certificate, its own TCP and TLS
// connection and its own stream. It keeps only what a delta needs (the
// set hash accumulator and the hot file's generation), so a hundred
// thousand of them fit in memory; full inventories are rebuilt from the
// template when sent.
type simAgent struct {
	idx  int
	id   *identity
	tmpl *template
	f    *fleet

	cc     *grpc.ClientConn
	stream agentv1.AgentService_ConnectClient
	cancel context.CancelFunc

	mu      sync.Mutex // guards everything below and stream.Send
	seq     uint64
	acc     inventory.Accumulator
	gen     uint64
	mode    uint32 // of the hot file; 0 means hotMode
	hasFull bool
	pending []pending
	closed  bool
}

func newSimAgent(f *fleet, idx int, id *identity) *simAgent {
	return &simAgent{idx: idx, id: id, tmpl: f.templates[idx%len(f.templates)], f: f}
}

// connect opens the agent's connection and stream and exchanges Hello and
// Welcome.
func (a *simAgent) connect(ctx context.Context) (*agentv1.Welcome, error) {
	creds := credentials.NewTLS(pki.AgentTLSConfig(&a.id.cert, a.f.ca, ""))
	cc, err := grpc.NewClient("passthrough:///"+a.f.grpcAddr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(dialerFrom(a.f.srcs[a.idx%len(a.f.srcs)])),
		// Small buffers: the load generator holds as many connections as
		// the server does, on the same machine.
		grpc.WithReadBufferSize(8<<10),
		grpc.WithWriteBufferSize(8<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(a.f.maxMsg), grpc.MaxCallRecvMsgSize(a.f.maxMsg)))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := agentv1.NewAgentServiceClient(cc).Connect(sctx)
	if err != nil {
		cancel()
		cc.Close()
		return nil, err
	}
	hostname := fmt.Sprintf("sim-%06d", a.idx)
	hello := &agentv1.Hello{AgentVersion: "loadgen", HostId: a.id.hostID, SpoolId: a.f.spoolID,
		Capabilities: []string{"run_script"},
		Facts: &commonv1.OSFacts{Hostname: hostname, Os: "linux", Platform: a.tmpl.distro.platform,
			PlatformVersion: a.tmpl.distro.version, KernelArch: "x86_64", KernelVersion: "6.1.0-loadgen"}}
	type result struct {
		w   *agentv1.Welcome
		err error
	}
	ch := make(chan result, 1)
	go func() {
		if err := stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Hello{Hello: hello}}); err != nil && !errors.Is(err, io.EOF) {
			ch <- result{err: err}
			return
		}
		m, err := stream.Recv()
		if err == nil && m.GetWelcome() == nil {
			err = fmt.Errorf("first server message is %T, want Welcome", m.GetMsg())
		}
		ch <- result{m.GetWelcome(), err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	if r.err != nil {
		cancel()
		cc.Close()
		return nil, r.err
	}
	a.cc, a.stream, a.cancel = cc, stream, cancel
	go a.recvLoop()
	return r.w, nil
}

// close ends the stream and the connection.
func (a *simAgent) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	if a.cancel != nil {
		a.cancel()
		a.cc.Close()
	}
}

func (a *simAgent) recvLoop() {
	for {
		m, err := a.stream.Recv()
		if err != nil {
			a.mu.Lock()
			closed := a.closed
			a.mu.Unlock()
			if !closed {
				a.f.streamFailed(fmt.Errorf("agent %d: %w", a.idx, err))
			}
			return
		}
		now := time.Now()
		switch msg := m.GetMsg().(type) {
		case *agentv1.ConnectResponse_Ack:
			a.acked(msg.Ack.GetSeq(), now)
		case *agentv1.ConnectResponse_Resync:
			a.f.mu.Lock()
			a.f.resyncs++
			a.f.mu.Unlock()
			if err := a.sendFull(nil); err != nil {
				a.f.streamFailed(err)
			}
		case *agentv1.ConnectResponse_Command:
			if hook := a.f.onCommand.Load(); hook != nil {
				(*hook)(a, msg.Command, now)
			}
			if err := a.sendResult(msg.Command); err != nil {
				a.f.streamFailed(err)
			}
		}
	}
}

// acked settles every pending message up to seq.
func (a *simAgent) acked(seq uint64, at time.Time) {
	a.mu.Lock()
	n := 0
	for n < len(a.pending) && a.pending[n].seq <= seq {
		n++
	}
	done := a.pending[:n:n]
	a.pending = append([]pending(nil), a.pending[n:]...)
	if len(a.pending) == 0 {
		a.pending = nil
	}
	a.mu.Unlock()
	for _, p := range done {
		a.f.ackLatency[p.kind].Observe(at.Sub(p.sent))
		if p.done != nil {
			p.done(at)
		}
	}
}

// sendLocked assigns the next sequence number to a message built by mk
// and sends it; a.mu is held.
func (a *simAgent) sendLocked(kind int, done func(time.Time), mk func(seq uint64) *agentv1.ConnectRequest) error {
	if a.stream == nil || a.closed {
		return fmt.Errorf("agent %d is not connected", a.idx)
	}
	a.seq++
	m := mk(a.seq)
	a.pending = append(a.pending, pending{seq: a.seq, kind: kind, sent: time.Now(), done: done})
	if err := a.stream.Send(m); err != nil {
		return fmt.Errorf("agent %d send: %w", a.idx, err)
	}
	return nil
}

// sendFull sends the whole inventory; done is called at its Ack.
func (a *simAgent) sendFull(done func(time.Time)) error {
	gen, mode := a.hotNow()
	h, err := makeHostItems(a.tmpl, a.idx, gen, mode)
	if err != nil {
		return err
	}
	items, acc := fullInventory(a.tmpl, h)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acc, a.hasFull = acc, true
	return a.sendLocked(msgFull, done, func(seq uint64) *agentv1.ConnectRequest {
		return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Inventory{Inventory: &agentv1.Inventory{
			Seq: seq, Full: true, Items: items, SetHash: acc.Sum(), CollectedAt: timestamppb.Now()}}}
	})
}

func (a *simAgent) hotNow() (uint64, uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen, a.hotModeLocked()
}

func (a *simAgent) hotModeLocked() uint32 {
	if a.mode == 0 {
		return hotMode
	}
	return a.mode
}

// sendDelta changes the hot file (as a watched file edited on the host)
// and sends the delta. It returns the file's new sha256 and the time the
// change was "detected". Agents that have not sent a full yet skip it.
//
// With chmod set the file's mode also changes to driftMode, which the
// loadgen baseline forbids: the change is a drift.
func (a *simAgent) sendDelta(done func(time.Time), chmod bool) (sha string, at time.Time, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.hasFull {
		return "", time.Time{}, nil
	}
	old := hotItem(a.idx, a.gen, a.hotModeLocked())
	a.gen++
	if chmod {
		a.mode = driftMode
	}
	cur := hotItem(a.idx, a.gen, a.hotModeLocked())
	if err := inventory.Seal(old); err != nil {
		return "", time.Time{}, err
	}
	if err := inventory.Seal(cur); err != nil {
		return "", time.Time{}, err
	}
	a.acc.Remove(inventory.RefOf(old), old.GetHash())
	a.acc.Add(inventory.RefOf(cur), cur.GetHash())
	sum := a.acc.Sum()
	at = time.Now()
	err = a.sendLocked(msgDelta, done, func(seq uint64) *agentv1.ConnectRequest {
		return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Inventory{Inventory: &agentv1.Inventory{
			Seq: seq, Items: []*commonv1.Item{cur}, SetHash: sum, CollectedAt: timestamppb.New(at)}}}
	})
	return cur.GetFile().GetSha256(), at, err
}

// sendResult answers a command: the simulated host runs it at once and
// succeeds.
func (a *simAgent) sendResult(cmd *agentv1.Command) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sendLocked(msgResult, nil, func(seq uint64) *agentv1.ConnectRequest {
		return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_CommandResult{CommandResult: &agentv1.CommandResult{
			Seq: seq, CommandId: cmd.GetId(), Status: "succeeded", Output: "ok\n", FinishedAt: timestamppb.Now()}}}
	})
}
