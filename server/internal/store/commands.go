package store

import (
	"context"
	"time"
)

// Command states.
const (
	CommandPending   = "pending"   // created, not yet on any stream
	CommandSent      = "sent"      // written to the host's stream at least once
	CommandSucceeded = "succeeded" // the agent reported success
	CommandFailed    = "failed"    // the agent reported failure
	CommandRefused   = "refused"   // the agent would not run it (policy, unsupported)
	CommandExpired   = "expired"   // its deadline passed before a result came
)

// CommandFinished reports whether a command state is final.
func CommandFinished(state string) bool {
	switch state {
	case CommandSucceeded, CommandFailed, CommandRefused, CommandExpired:
		return true
	}
	return false
}

// Command is one instruction for one host. Payload is the marshalled
// agentv1.Command; the store does not interpret it.
type Command struct {
	ID        string    `json:"id"`
	HostID    string    `json:"host_id"`
	Kind      string    `json:"kind"`
	Payload   []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// Deadline, when set, is when an unfinished command expires.
	Deadline   time.Time `json:"deadline"`
	State      string    `json:"state"`
	SentAt     time.Time `json:"sent_at"`
	Attempts   int       `json:"attempts"`
	FinishedAt time.Time `json:"finished_at"`
	ExitCode   int32     `json:"exit_code"`
	Output     string    `json:"output,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// CommandResultUpdate is one CommandResult message from a host's stream.
// It shares the (host, spool, seq) scope of InventoryUpdate: a seq is
// consumed by whichever message carries it.
type CommandResultUpdate struct {
	HostID     string
	SpoolID    string
	Seq        uint64
	CommandID  string
	Status     string // succeeded, failed or refused
	ExitCode   int32
	Output     string
	Error      string
	FinishedAt time.Time
	ReceivedAt time.Time
}

// Commands persists commands and their results.
type Commands interface {
	// CreateCommand stores a new command in state pending. ErrConflict when
	// the ID exists, ErrNotFound for an unknown host.
	CreateCommand(ctx context.Context, c *Command) error
	// GetCommand returns ErrNotFound for an unknown ID.
	GetCommand(ctx context.Context, id string) (*Command, error)
	// ListCommands returns a host's commands, newest first, at most limit
	// (limit <= 0: all).
	ListCommands(ctx context.Context, hostID string, limit int) ([]*Command, error)
	// UnfinishedCommands returns a host's pending and sent commands, oldest
	// first: what must be (re)delivered when the host connects.
	UnfinishedCommands(ctx context.Context, hostID string) ([]*Command, error)
	// MarkCommandSent moves a pending or sent command to sent, counting an
	// attempt. A finished command is left alone (no error).
	MarkCommandSent(ctx context.Context, id string, at time.Time) error
	// ApplyCommandResult records a result at most once per (host, spool,
	// seq) — a duplicate returns Duplicate and changes nothing — and at most
	// once per command: a result for an already finished command consumes
	// the seq and returns Duplicate. A result naming an unknown command, or
	// another host's command, consumes the seq and returns ErrNotFound
	// wrapped (so a hostile agent cannot touch other hosts' commands).
	ApplyCommandResult(ctx context.Context, u *CommandResultUpdate) (Outcome, error)
	// ExpireCommands moves unfinished commands whose deadline is before now
	// to expired and returns how many.
	ExpireCommands(ctx context.Context, now time.Time) (int, error)
}
