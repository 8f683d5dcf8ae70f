package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

var commandTests = []test{
	{"Commands/CreateGet", testCommandCreateGet},
	{"Commands/CreateRefused", testCommandCreateRefused},
	{"Commands/List", testCommandList},
	{"Commands/Unfinished", testCommandUnfinished},
	{"Commands/MarkSent", testCommandMarkSent},
	{"Commands/ResultOnce", testCommandResultOnce},
	{"Commands/ResultDuplicateSeq", testCommandResultDuplicateSeq},
	{"Commands/ResultForFinished", testCommandResultForFinished},
	{"Commands/ResultOtherHost", testCommandResultOtherHost},
	{"Commands/ResultUnknownCommand", testCommandResultUnknownCommand},
	{"Commands/ResultUnknownHost", testCommandResultUnknownHost},
	{"Commands/ResultInvalid", testCommandResultInvalid},
	{"Commands/ResultSharesSeqWithInventory", testCommandResultSharesSeq},
	{"Commands/ResultNewSpoolScope", testCommandResultNewSpoolScope},
	{"Commands/Expire", testCommandExpire},
}

// newCommand returns a pending command for host, created at t0 plus n
// minutes, with a deadline an hour later.
func newCommand(id, host string, n int) *store.Command {
	created := t0.Add(time.Duration(n) * time.Minute)
	return &store.Command{
		ID: id, HostID: host, Kind: "script",
		Payload:   []byte("payload of " + id),
		CreatedAt: created, CreatedBy: "admin@example.com",
		Deadline: created.Add(time.Hour),
		State:    store.CommandPending,
	}
}

func createCommands(t *testing.T, s store.Store, cmds ...*store.Command) {
	t.Helper()
	for _, c := range cmds {
		if err := s.CreateCommand(t.Context(), c); err != nil {
			t.Fatalf("CreateCommand(%s): %v", c.ID, err)
		}
	}
}

func getCommand(t *testing.T, s store.Store, id string) *store.Command {
	t.Helper()
	c, err := s.GetCommand(t.Context(), id)
	if err != nil {
		t.Fatalf("GetCommand(%s): %v", id, err)
	}
	return c
}

func sameCommand(t *testing.T, what string, got, want *store.Command) {
	t.Helper()
	if got.ID != want.ID || got.HostID != want.HostID || got.Kind != want.Kind || !bytes.Equal(got.Payload, want.Payload) ||
		!got.CreatedAt.Equal(want.CreatedAt) || got.CreatedBy != want.CreatedBy || !got.Deadline.Equal(want.Deadline) ||
		got.State != want.State || !got.SentAt.Equal(want.SentAt) || got.Attempts != want.Attempts ||
		!got.FinishedAt.Equal(want.FinishedAt) || got.ExitCode != want.ExitCode || got.Output != want.Output || got.Error != want.Error {
		t.Fatalf("%s =\n  %+v\nwant\n  %+v", what, got, want)
	}
}

func commandIDs(cmds []*store.Command) []string {
	ids := []string{}
	for _, c := range cmds {
		ids = append(ids, c.ID)
	}
	return ids
}

func wantCommandIDs(t *testing.T, what string, got []*store.Command, err error, want ...string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if fmt.Sprint(commandIDs(got)) != fmt.Sprint(append([]string{}, want...)) {
		t.Fatalf("%s = %v, want %v", what, commandIDs(got), want)
	}
}

// result is a succeeded result for command id on host's stream.
func result(host, spool string, seq uint64, id string) *store.CommandResultUpdate {
	return &store.CommandResultUpdate{
		HostID: host, SpoolID: spool, Seq: seq, CommandID: id,
		Status: store.CommandSucceeded, ExitCode: 0, Output: "done " + id,
		FinishedAt: received(seq).Add(-time.Second), ReceivedAt: received(seq),
	}
}

func applyResult(t *testing.T, s store.Store, u *store.CommandResultUpdate, want store.Outcome) {
	t.Helper()
	got, err := s.ApplyCommandResult(t.Context(), u)
	if err != nil {
		t.Fatalf("ApplyCommandResult(host %s, spool %s, seq %d, command %s): %v", u.HostID, u.SpoolID, u.Seq, u.CommandID, err)
	}
	if got != want {
		t.Fatalf("ApplyCommandResult(host %s, spool %s, seq %d, command %s) = %v, want %v", u.HostID, u.SpoolID, u.Seq, u.CommandID, got, want)
	}
}

// wantLastSeq checks the host's stream's spool and last consumed seq.
func wantLastSeq(t *testing.T, s store.Store, host, spool string, seq uint64) {
	t.Helper()
	st, err := s.GetStreamState(t.Context(), host)
	if err != nil {
		t.Fatalf("GetStreamState(%s): %v", host, err)
	}
	if st.SpoolID != spool || st.LastSeq != seq {
		t.Fatalf("GetStreamState(%s) = spool %q, last seq %d; want %q, %d", host, st.SpoolID, st.LastSeq, spool, seq)
	}
}

func testCommandCreateGet(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	c := newCommand("cmd-1", "host-1", 0)
	// Whatever the caller says, a new command is pending with no attempt
	// or result.
	c.State, c.Attempts, c.Output, c.SentAt = store.CommandSucceeded, 3, "early", t0
	if err := s.CreateCommand(t.Context(), c); err != nil {
		t.Fatalf("CreateCommand: %v", err)
	}
	want := newCommand("cmd-1", "host-1", 0)
	sameCommand(t, "GetCommand", getCommand(t, s, "cmd-1"), want)

	noDeadline := newCommand("cmd-2", "host-1", 1)
	noDeadline.Deadline, noDeadline.Payload = time.Time{}, nil
	createCommands(t, s, noDeadline)
	got := getCommand(t, s, "cmd-2")
	if !got.Deadline.IsZero() || len(got.Payload) != 0 {
		t.Fatalf("GetCommand(cmd-2) = deadline %s, payload %q; want none", got.Deadline, got.Payload)
	}
	if _, err := s.GetCommand(t.Context(), "cmd-3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCommand(unknown) error = %v, want ErrNotFound", err)
	}
}

func testCommandCreateRefused(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1", "host-2")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	if err := s.CreateCommand(t.Context(), newCommand("cmd-1", "host-2", 1)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateCommand(existing ID) error = %v, want ErrConflict", err)
	}
	if err := s.CreateCommand(t.Context(), newCommand("cmd-2", "ghost", 1)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CreateCommand(unknown host) error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCommand(t.Context(), "cmd-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a command for an unknown host was stored: %v", err)
	}
	sameCommand(t, "GetCommand after a conflict", getCommand(t, s, "cmd-1"), newCommand("cmd-1", "host-1", 0))
}

func testCommandList(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1", "host-2")
	// Created out of order, and with IDs whose order is not time order.
	createCommands(t, s,
		newCommand("c", "host-1", 2), newCommand("a", "host-1", 3), newCommand("x", "host-2", 4),
		newCommand("b", "host-1", 1), newCommand("d", "host-1", 4))
	got, err := s.ListCommands(t.Context(), "host-1", 0)
	wantCommandIDs(t, "ListCommands(host-1, 0)", got, err, "d", "a", "c", "b")
	sameCommand(t, "ListCommands(host-1)[1]", got[1], newCommand("a", "host-1", 3))
	got, err = s.ListCommands(t.Context(), "host-1", 2)
	wantCommandIDs(t, "ListCommands(host-1, 2)", got, err, "d", "a")
	got, err = s.ListCommands(t.Context(), "host-1", -1)
	wantCommandIDs(t, "ListCommands(host-1, -1)", got, err, "d", "a", "c", "b")
	got, err = s.ListCommands(t.Context(), "host-2", 10)
	wantCommandIDs(t, "ListCommands(host-2, 10)", got, err, "x")
	enrollHosts(t, s, "host-3")
	got, err = s.ListCommands(t.Context(), "host-3", 0)
	wantCommandIDs(t, "ListCommands(host-3, 0)", got, err)
}

func testCommandUnfinished(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1", "host-2")
	createCommands(t, s,
		newCommand("c", "host-1", 2), newCommand("a", "host-1", 3), newCommand("b", "host-1", 1),
		newCommand("d", "host-1", 4), newCommand("x", "host-2", 0))
	got, err := s.UnfinishedCommands(t.Context(), "host-1")
	wantCommandIDs(t, "UnfinishedCommands(host-1)", got, err, "b", "c", "a", "d")

	// Sent commands stay unfinished; finished ones leave.
	if err := s.MarkCommandSent(t.Context(), "c", t0.Add(time.Hour)); err != nil {
		t.Fatalf("MarkCommandSent: %v", err)
	}
	applyResult(t, s, result("host-1", "sp", 1, "a"), store.Applied)
	failed := result("host-1", "sp", 2, "b")
	failed.Status = store.CommandFailed
	applyResult(t, s, failed, store.Applied)
	refused := result("host-1", "sp", 3, "d")
	refused.Status = store.CommandRefused
	applyResult(t, s, refused, store.Applied)
	got, err = s.UnfinishedCommands(t.Context(), "host-1")
	wantCommandIDs(t, "UnfinishedCommands(host-1) after results", got, err, "c")
	if got[0].State != store.CommandSent {
		t.Fatalf("unfinished command c is %s, want sent", got[0].State)
	}
	got, err = s.UnfinishedCommands(t.Context(), "host-2")
	wantCommandIDs(t, "UnfinishedCommands(host-2)", got, err, "x")
	got, err = s.ListCommands(t.Context(), "host-1", 0)
	wantCommandIDs(t, "ListCommands(host-1) after results", got, err, "d", "a", "c", "b")
}

func testCommandMarkSent(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	want := newCommand("cmd-1", "host-1", 0)
	for i := 1; i <= 3; i++ {
		at := t0.Add(time.Duration(i) * time.Hour)
		if err := s.MarkCommandSent(t.Context(), "cmd-1", at); err != nil {
			t.Fatalf("MarkCommandSent %d: %v", i, err)
		}
		want.State, want.SentAt, want.Attempts = store.CommandSent, at, i
		sameCommand(t, fmt.Sprintf("after MarkCommandSent %d", i), getCommand(t, s, "cmd-1"), want)
	}

	// A finished command is left alone.
	u := result("host-1", "sp", 1, "cmd-1")
	applyResult(t, s, u, store.Applied)
	want.State, want.FinishedAt, want.Output = store.CommandSucceeded, u.FinishedAt, u.Output
	sameCommand(t, "after the result", getCommand(t, s, "cmd-1"), want)
	if err := s.MarkCommandSent(t.Context(), "cmd-1", t0.Add(10*time.Hour)); err != nil {
		t.Fatalf("MarkCommandSent(finished): %v", err)
	}
	sameCommand(t, "after MarkCommandSent of a finished command", getCommand(t, s, "cmd-1"), want)
}

func testCommandResultOnce(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	if err := s.MarkCommandSent(t.Context(), "cmd-1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	u := result("host-1", "sp", 5, "cmd-1")
	u.Status, u.ExitCode, u.Output, u.Error = store.CommandFailed, 3, "partial output\n", "exit status 3"
	applyResult(t, s, u, store.Applied)
	want := newCommand("cmd-1", "host-1", 0)
	want.State, want.SentAt, want.Attempts = store.CommandFailed, t0.Add(time.Minute), 1
	want.FinishedAt, want.ExitCode, want.Output, want.Error = u.FinishedAt, 3, "partial output\n", "exit status 3"
	sameCommand(t, "GetCommand after the result", getCommand(t, s, "cmd-1"), want)
	wantLastSeq(t, s, "host-1", "sp", 5)

	// Without FinishedAt, the result is finished when it was received.
	createCommands(t, s, newCommand("cmd-2", "host-1", 1))
	u = result("host-1", "sp", 6, "cmd-2")
	u.FinishedAt = time.Time{}
	applyResult(t, s, u, store.Applied)
	if got := getCommand(t, s, "cmd-2"); got.State != store.CommandSucceeded || !got.FinishedAt.Equal(u.ReceivedAt) {
		t.Fatalf("cmd-2 = %s finished at %s, want succeeded at %s", got.State, got.FinishedAt, u.ReceivedAt)
	}
}

func testCommandResultDuplicateSeq(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0), newCommand("cmd-2", "host-1", 1))
	u := result("host-1", "sp", 3, "cmd-1")
	applyResult(t, s, u, store.Applied)
	before := getCommand(t, s, "cmd-1")

	// Seq 3 and lower are consumed, whatever they carry: cmd-2 is not
	// finished by a redelivery with another command ID.
	applyResult(t, s, u, store.Duplicate)
	for _, seq := range []uint64{3, 2, 0} {
		applyResult(t, s, result("host-1", "sp", seq, "cmd-2"), store.Duplicate)
	}
	sameCommand(t, "cmd-1 after duplicates", getCommand(t, s, "cmd-1"), before)
	if got := getCommand(t, s, "cmd-2"); got.State != store.CommandPending {
		t.Fatalf("cmd-2 is %s after duplicate seqs, want pending", got.State)
	}
	wantLastSeq(t, s, "host-1", "sp", 3)
}

func testCommandResultForFinished(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	first := result("host-1", "sp", 1, "cmd-1")
	applyResult(t, s, first, store.Applied)
	want := getCommand(t, s, "cmd-1")

	// A second result (a rerun after a lost ack, say) consumes its seq and
	// changes nothing.
	second := result("host-1", "sp", 2, "cmd-1")
	second.Status, second.ExitCode, second.Output = store.CommandFailed, 1, "second run"
	applyResult(t, s, second, store.Duplicate)
	sameCommand(t, "cmd-1 after a second result", getCommand(t, s, "cmd-1"), want)
	wantLastSeq(t, s, "host-1", "sp", 2)
	applyResult(t, s, second, store.Duplicate)

	// An expired command takes no result either.
	c := newCommand("cmd-2", "host-1", 1)
	createCommands(t, s, c)
	if n, err := s.ExpireCommands(t.Context(), c.Deadline.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("ExpireCommands = %d, %v; want 1", n, err)
	}
	applyResult(t, s, result("host-1", "sp", 3, "cmd-2"), store.Duplicate)
	if got := getCommand(t, s, "cmd-2"); got.State != store.CommandExpired {
		t.Fatalf("cmd-2 is %s, want still expired", got.State)
	}
	wantLastSeq(t, s, "host-1", "sp", 3)
}

func testCommandResultOtherHost(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1", "host-2")
	createCommands(t, s, newCommand("cmd-2", "host-2", 0))
	want := getCommand(t, s, "cmd-2")
	out, err := s.ApplyCommandResult(t.Context(), result("host-1", "sp", 4, "cmd-2"))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ApplyCommandResult(another host's command) = %v, %v; want ErrNotFound", out, err)
	}
	sameCommand(t, "the other host's command", getCommand(t, s, "cmd-2"), want)
	// host-1's seq is consumed; host-2's stream is untouched.
	wantLastSeq(t, s, "host-1", "sp", 4)
	applyResult(t, s, result("host-1", "sp", 4, "cmd-2"), store.Duplicate)
	wantState(t, s, "host-2", store.StreamState{})
	// The owner's result still applies.
	applyResult(t, s, result("host-2", "sp", 1, "cmd-2"), store.Applied)
}

func testCommandResultUnknownCommand(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	for i, id := range []string{"nope", "cmd-1x"} {
		out, err := s.ApplyCommandResult(t.Context(), result("host-1", "sp", uint64(i+1), id))
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ApplyCommandResult(unknown command %s) = %v, %v; want ErrNotFound", id, out, err)
		}
	}
	wantLastSeq(t, s, "host-1", "sp", 2)
	applyResult(t, s, result("host-1", "sp", 1, "nope"), store.Duplicate)
}

func testCommandResultUnknownHost(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	for _, host := range []string{"ghost", ""} {
		out, err := s.ApplyCommandResult(t.Context(), result(host, "sp", 1, "cmd-1"))
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ApplyCommandResult(host %q) = %v, %v; want ErrNotFound", host, out, err)
		}
	}
	if got := getCommand(t, s, "cmd-1"); got.State != store.CommandPending {
		t.Fatalf("cmd-1 is %s, want pending", got.State)
	}
}

func testCommandResultInvalid(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	for _, status := range []string{"", store.CommandPending, store.CommandSent, store.CommandExpired, "bogus"} {
		u := result("host-1", "sp", 1, "cmd-1")
		u.Status = status
		if out, err := s.ApplyCommandResult(t.Context(), u); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("ApplyCommandResult(status %q) = %v, %v; want ErrInvalid", status, out, err)
		}
	}
	if out, err := s.ApplyCommandResult(t.Context(), result("host-1", "sp", 1, "")); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ApplyCommandResult(empty command ID) = %v, %v; want ErrInvalid", out, err)
	}
	// No seq was consumed and nothing changed.
	wantState(t, s, "host-1", store.StreamState{})
	applyResult(t, s, result("host-1", "sp", 1, "cmd-1"), store.Applied)
}

func testCommandResultSharesSeq(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0), newCommand("cmd-2", "host-1", 1))
	base := baseItems()
	full := fullUpdate("host-1", "sp", 1, base)
	apply(t, s, full, store.Applied)
	applyResult(t, s, result("host-1", "sp", 2, "cmd-1"), store.Applied)

	// A seq a result consumed is a duplicate for an inventory, and the
	// other way round.
	apply(t, s, deltaUpdate("host-1", "sp", 2, base, []*commonv1.Item{pkg("zsh", "5.9")}, nil), store.Duplicate)
	applyResult(t, s, result("host-1", "sp", 1, "cmd-2"), store.Duplicate)
	if got := getCommand(t, s, "cmd-2"); got.State != store.CommandPending {
		t.Fatalf("cmd-2 is %s, want pending", got.State)
	}
	ups := []*commonv1.Item{pkg("zsh", "5.9")}
	d := deltaUpdate("host-1", "sp", 3, base, ups, nil)
	apply(t, s, d, store.Applied)
	applyResult(t, s, result("host-1", "sp", 4, "cmd-2"), store.Applied)

	// A result moves the seq only: the items and their state stay.
	cur := applyDelta(base, ups, nil)
	want := stateOf(d, cur)
	want.LastSeq = 4
	wantState(t, s, "host-1", want)
	wantItems(t, s, "host-1", cur)
}

func testCommandResultNewSpoolScope(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	createCommands(t, s, newCommand("cmd-1", "host-1", 0))
	base := baseItems()
	full := fullUpdate("host-1", "spool-a", 7, base)
	apply(t, s, full, store.Applied)

	// The agent's spool was recreated and its first message is a result:
	// it is recorded, the scope restarts, and as after any new scope the
	// stream needs a full inventory before deltas apply again.
	applyResult(t, s, result("host-1", "spool-b", 1, "cmd-1"), store.Applied)
	want := stateOf(full, base)
	want.SpoolID, want.LastSeq, want.NeedsFull = "spool-b", 1, true
	wantState(t, s, "host-1", want)
	apply(t, s, deltaUpdate("host-1", "spool-b", 2, base, []*commonv1.Item{pkg("zsh", "5.9")}, nil), store.NeedsFull)
	wantItems(t, s, "host-1", base)
	full = fullUpdate("host-1", "spool-b", 3, base[1:])
	apply(t, s, full, store.Applied)
	wantState(t, s, "host-1", stateOf(full, base[1:]))
}

func testCommandExpire(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1", "host-2")
	// Deadlines at t0 + 1h + n minutes.
	a, b, c, d := newCommand("a", "host-1", 0), newCommand("b", "host-1", 1), newCommand("c", "host-2", 2), newCommand("d", "host-1", 3)
	none := newCommand("none", "host-1", 4)
	none.Deadline = time.Time{}
	createCommands(t, s, a, b, c, d, none)
	if err := s.MarkCommandSent(t.Context(), "b", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	applyResult(t, s, result("host-1", "sp", 1, "a"), store.Applied)

	// Deadline before now: b and c. a is finished, d's deadline is now
	// (not before), none has none.
	now := d.Deadline
	n, err := s.ExpireCommands(t.Context(), now)
	if err != nil || n != 2 {
		t.Fatalf("ExpireCommands = %d, %v; want 2", n, err)
	}
	for id, state := range map[string]string{
		"a": store.CommandSucceeded, "b": store.CommandExpired, "c": store.CommandExpired,
		"d": store.CommandPending, "none": store.CommandPending,
	} {
		if got := getCommand(t, s, id); got.State != state {
			t.Fatalf("command %s is %s, want %s", id, got.State, state)
		}
	}
	if got := getCommand(t, s, "b"); got.Attempts != 1 || !got.FinishedAt.Equal(now) {
		t.Fatalf("expired b: %d attempts, finished at %s; want 1 and %s", got.Attempts, got.FinishedAt, now)
	}
	got, err := s.UnfinishedCommands(t.Context(), "host-1")
	wantCommandIDs(t, "UnfinishedCommands(host-1) after expiry", got, err, "d", "none")
	got, err = s.UnfinishedCommands(t.Context(), "host-2")
	wantCommandIDs(t, "UnfinishedCommands(host-2) after expiry", got, err)

	// Expired commands are not expired again; later, d is.
	if n, err := s.ExpireCommands(t.Context(), now); err != nil || n != 0 {
		t.Fatalf("ExpireCommands again = %d, %v; want 0", n, err)
	}
	if n, err := s.ExpireCommands(t.Context(), now.Add(24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("ExpireCommands a day later = %d, %v; want 1", n, err)
	}
	if got := getCommand(t, s, "none"); got.State != store.CommandPending {
		t.Fatalf("a command without a deadline is %s, want pending", got.State)
	}
}
