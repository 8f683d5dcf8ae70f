package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

// session runs one stream to addr until it fails or ctx ends.
func (r *Runner) session(ctx context.Context, addr string) error {
	serverName := r.o.ServerName
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(r.o.Identity.TLSConfig(serverNameFor(addr, serverName)))),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(r.o.MaxMessageSize), grpc.MaxCallSendMsgSize(r.o.MaxMessageSize)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := agentv1.NewAgentServiceClient(cc).Connect(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	hello := &agentv1.Hello{
		AgentVersion: r.o.AgentVersion,
		HostId:       r.o.Identity.HostID,
		Facts:        r.o.Facts(),
		Capabilities: r.capabilities(),
		SpoolId:      r.o.Spool.ID(),
		LastSeq:      r.o.Spool.LastSeq(),
	}
	if err := stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("await welcome: %w", err)
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return errors.New("server did not answer Hello with Welcome")
	}
	if err := r.o.Spool.Ack(welcome.GetLastAppliedSeq()); err != nil {
		return fmt.Errorf("ack through welcome: %w", err)
	}
	r.applyConfig(welcome.GetConfig())
	if welcome.GetNeedFull() {
		pending, err := r.hasPendingFull(welcome.GetLastAppliedSeq())
		if err != nil {
			return err
		}
		// A full inventory already waiting in the spool answers the need;
		// another would only double the first connection's traffic.
		if !pending {
			r.resetSet()
		}
	}
	r.mu.Lock()
	r.connected = true
	r.mu.Unlock()
	r.log.Info("connected", "server", addr, "host", r.o.Identity.HostID,
		"last_applied", welcome.GetLastAppliedSeq(), "need_full", welcome.GetNeedFull())

	// Only this goroutine calls stream.Send; the receiver hands it work.
	renewals := make(chan *agentv1.RenewResponse, 1)
	recvErr := make(chan error, 1)
	go func() { recvErr <- r.recvLoop(stream, renewals) }()

	sent := welcome.GetLastAppliedSeq()
	heartbeat := time.NewTicker(r.o.HeartbeatInterval)
	defer heartbeat.Stop()
	// Check for renewal often enough for short-lived certificates.
	renewCheck := time.NewTicker(min(time.Minute, max(time.Second, r.o.Identity.Lifetime()/20)))
	defer renewCheck.Stop()
	var pendingKey []byte
	r.notify()
	for {
		if pendingKey == nil && time.Now().After(r.o.Identity.RenewAt()) {
			key, csr, err := pki.NewKeyAndCSR()
			if err != nil {
				return fmt.Errorf("renewal key: %w", err)
			}
			if err := stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Renew{Renew: &agentv1.RenewRequest{Csr: csr}}}); err != nil {
				return fmt.Errorf("send renewal: %w", err)
			}
			pendingKey = key
			r.log.Info("certificate renewal requested", "not_after", r.o.Identity.Leaf().NotAfter)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case resp := <-renewals:
			if resp.GetError() != "" || pendingKey == nil {
				r.log.Error("certificate renewal refused", "err", resp.GetError())
			} else if err := r.o.Identity.Replace(pendingKey, resp.GetCertificate()); err != nil {
				r.log.Error("install renewed certificate", "err", err)
			} else {
				r.log.Info("certificate renewed", "not_after", r.o.Identity.Leaf().NotAfter)
			}
			pendingKey = nil
		case <-heartbeat.C:
			if err := stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{SentAt: timestamppb.Now()}}}); err != nil {
				return fmt.Errorf("send heartbeat: %w", err)
			}
		case <-renewCheck.C:
		case <-r.wake:
			for {
				entries, err := r.o.Spool.Pending(sent, 64)
				if err != nil {
					return fmt.Errorf("read spool: %w", err)
				}
				if len(entries) == 0 {
					break
				}
				for _, e := range entries {
					if err := stream.Send(e.Msg); err != nil {
						return fmt.Errorf("send seq %d: %w", e.Seq, err)
					}
					sent = e.Seq
				}
			}
		}
	}
}

// hasPendingFull reports whether the spool holds a full inventory after
// seq, not yet acknowledged.
func (r *Runner) hasPendingFull(after uint64) (bool, error) {
	for {
		entries, err := r.o.Spool.Pending(after, 64)
		if err != nil {
			return false, fmt.Errorf("read spool: %w", err)
		}
		if len(entries) == 0 {
			return false, nil
		}
		for _, e := range entries {
			if e.Msg.GetInventory().GetFull() {
				return true, nil
			}
			after = e.Seq
		}
	}
}

func (r *Runner) recvLoop(stream agentv1.AgentService_ConnectClient, renewals chan<- *agentv1.RenewResponse) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch msg := m.Msg.(type) {
		case *agentv1.ConnectResponse_Ack:
			if err := r.o.Spool.Ack(msg.Ack.GetSeq()); err != nil {
				return fmt.Errorf("ack %d: %w", msg.Ack.GetSeq(), err)
			}
		case *agentv1.ConnectResponse_Resync:
			r.log.Info("server asked for a full inventory", "reason", msg.Resync.GetReason())
			r.resetSet()
		case *agentv1.ConnectResponse_Command:
			r.handleCommand(msg.Command)
		case *agentv1.ConnectResponse_Config:
			r.applyConfig(msg.Config)
		case *agentv1.ConnectResponse_Renew:
			select {
			case renewals <- msg.Renew:
			default:
			}
		default:
			r.log.Warn("ignoring unexpected message from server", "type", fmt.Sprintf("%T", m.Msg))
		}
	}
}

// applyConfig applies a configuration from the server. None at all (a
// Welcome without one) changes nothing; otherwise the baseline paths are
// the complete list, and an empty one clears them.
func (r *Runner) applyConfig(c *agentv1.ConfigUpdate) {
	if c == nil {
		return
	}
	if s := c.GetScanIntervalSeconds(); s > 0 {
		r.mu.Lock()
		r.scanInterval = time.Duration(s) * time.Second
		r.mu.Unlock()
	}
	r.applyBaselinePaths(c.GetBaselinePaths())
}

func (r *Runner) capabilities() []string {
	caps := []string{"inventory.delta", "cert.renew"}
	if r.o.AllowScripts {
		caps = append(caps, "command.run_script")
	}
	return caps
}

// handleCommand answers a command. This build carries out no commands yet:
// each is refused with a reason, and the result is spooled like an
// inventory so the server learns of it even across a reconnect. A command
// ID seen before is not acted on again: the server may deliver a command
// more than once (after a reconnect, or from two replicas), and a command
// must never run twice.
func (r *Runner) handleCommand(cmd *agentv1.Command) {
	if cmd.GetId() == "" {
		r.log.Warn("ignoring a command without an ID")
		return
	}
	seenKey := "command/" + cmd.GetId()
	if _, seen, err := r.o.Spool.Get(seenKey); err != nil {
		r.log.Error("check command history", "command", cmd.GetId(), "err", err)
		return
	} else if seen {
		r.log.Debug("command already handled", "command", cmd.GetId())
		return
	}
	res := &agentv1.CommandResult{CommandId: cmd.GetId(), Status: "refused", FinishedAt: timestamppb.Now()}
	switch cmd.GetAction().(type) {
	case *agentv1.Command_RunScript:
		if !r.o.AllowScripts {
			res.Error = "running scripts is disabled by this agent's configuration (allow_scripts: false)"
		} else {
			res.Error = "running scripts is not supported by this agent version"
		}
	case nil:
		res.Error = "command has no action"
	default:
		res.Error = fmt.Sprintf("command %T is not supported by this agent version", cmd.GetAction())
	}
	// Record the command as handled before its result is queued: a crash
	// in between loses a result (the server expires the command) rather
	// than running it twice.
	if err := r.o.Spool.Put(seenKey, []byte(res.GetStatus())); err != nil {
		r.log.Error("record command", "command", cmd.GetId(), "err", err)
		return
	}
	msg := &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_CommandResult{CommandResult: res}}
	if _, err := r.o.Spool.Append(msg, func(m *agentv1.ConnectRequest, seq uint64) { m.GetCommandResult().Seq = seq }); err != nil {
		r.log.Error("spool command result", "command", cmd.GetId(), "err", err)
		return
	}
	r.log.Info("command refused", "command", cmd.GetId(), "reason", res.Error)
	r.notify()
}

func serverNameFor(addr, override string) string {
	if override != "" {
		return override
	}
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			h := addr[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				return h[1 : len(h)-1]
			}
			return h
		}
	}
	return addr
}
