package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/quantumlayer/qinfra/server/internal/cluster"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

// Run follows the cluster bus until ctx ends: it closes the streams of
// hosts revoked on any replica, and delivers commands queued and
// configuration changes made on any replica to the hosts whose streams this
// replica holds.
func (s *Service) Run(ctx context.Context) {
	if s.opts.Bus == nil {
		<-ctx.Done()
		return
	}
	events, done := s.opts.Bus.Subscribe()
	defer done()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			s.handleEvent(ctx, e)
		}
	}
}

func (s *Service) handleEvent(ctx context.Context, e cluster.Event) {
	switch e.Type {
	case cluster.EventRevoked:
		s.Disconnect(e.HostID, "revoked")
	case cluster.EventCommand:
		if s.Connected(e.HostID) {
			s.deliverCommands(ctx, e.HostID)
		}
	case cluster.EventBaselines:
		s.BaselinesChanged()
	case cluster.EventConfig:
		// No host: a change that may concern any host (a baseline).
		if e.HostID == "" {
			s.BaselinesChanged()
			s.PushConfig(nil)
		} else if s.Connected(e.HostID) {
			s.PushConfig([]string{e.HostID})
		}
	case cluster.EventResync:
		// Events may have been missed: check every live stream against the
		// store.
		for _, id := range s.liveHosts() {
			h, err := s.store.GetHost(ctx, id)
			if err == nil && h.Revoked {
				s.Disconnect(id, "revoked")
				continue
			}
			s.deliverCommands(ctx, id)
		}
		// Configuration changes may have been missed too; unchanged
		// configurations are not resent.
		s.PushConfig(nil)
	}
}

func (s *Service) liveHosts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.live))
	for id := range s.live {
		ids = append(ids, id)
	}
	return ids
}

// deliverCommands sends the host's unfinished commands on its stream. A
// command may reach the agent more than once (a reconnect, an event racing
// the connect); the agent runs each command ID once.
func (s *Service) deliverCommands(ctx context.Context, hostID string) {
	cmds, err := s.store.UnfinishedCommands(ctx, hostID)
	if err != nil {
		s.log.Error("load unfinished commands", "host", hostID, "err", err)
		return
	}
	for _, c := range cmds {
		var cmd agentv1.Command
		if err := proto.Unmarshal(c.Payload, &cmd); err != nil {
			s.log.Error("stored command does not decode", "command", c.ID, "err", err)
			continue
		}
		cmd.Id = c.ID
		if err := s.SendCommand(hostID, &cmd); err != nil {
			s.log.Warn("command not sent", "host", hostID, "command", c.ID, "err", err)
			return
		}
		if err := s.store.MarkCommandSent(ctx, c.ID, s.opts.Now().UTC()); err != nil {
			s.log.Error("mark command sent", "command", c.ID, "err", err)
		}
		s.audit(ctx, "server", "command.send", hostID, fmt.Sprintf(`{"command_id":%q,"kind":%q}`, c.ID, c.Kind))
	}
}

func (ss *session) commandResult(ctx context.Context, r *agentv1.CommandResult) error {
	s := ss.svc
	if r.GetSeq() == 0 {
		return status.Error(codes.InvalidArgument, "command result without a sequence number")
	}
	u := &store.CommandResultUpdate{
		HostID:     ss.hostID,
		SpoolID:    ss.spoolID,
		Seq:        r.GetSeq(),
		CommandID:  r.GetCommandId(),
		Status:     r.GetStatus(),
		ExitCode:   r.GetExitCode(),
		Output:     truncate(r.GetOutput(), 64<<10),
		Error:      truncate(r.GetError(), 8<<10),
		ReceivedAt: s.opts.Now().UTC(),
	}
	if r.GetFinishedAt() != nil {
		u.FinishedAt = r.GetFinishedAt().AsTime()
	} else {
		u.FinishedAt = u.ReceivedAt
	}
	switch u.Status {
	case store.CommandSucceeded, store.CommandFailed, store.CommandRefused:
	default:
		u.Status = store.CommandFailed
		u.Error = fmt.Sprintf("agent reported unknown status %q; %s", r.GetStatus(), u.Error)
	}
	out, err := s.store.ApplyCommandResult(ctx, u)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Unknown, or another host's command: the seq is consumed, so ack
		// it, but nothing is recorded.
		s.log.Warn("result for a command this host does not have", "host", ss.hostID, "command", u.CommandID)
		return ss.ack(u.Seq)
	case err != nil:
		s.log.Error("apply command result", "host", ss.hostID, "err", err)
		return status.Error(codes.Unavailable, "store unavailable")
	}
	if out == store.Applied {
		s.audit(ctx, "host:"+ss.hostID, "command.result", ss.hostID,
			fmt.Sprintf(`{"command_id":%q,"status":%q,"exit_code":%d}`, u.CommandID, u.Status, u.ExitCode))
		s.log.Info("command result", "host", ss.hostID, "command", u.CommandID, "status", u.Status)
	}
	return ss.ack(u.Seq)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// BaselinesChanged runs Options.BaselinesChanged, if set: a baseline
// changed on some replica.
func (s *Service) BaselinesChanged() {
	if s.opts.BaselinesChanged != nil {
		s.opts.BaselinesChanged()
	}
}
