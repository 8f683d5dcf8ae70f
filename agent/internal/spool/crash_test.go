package spool

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

// Environment of the helper process started by TestCrashSafety.
const (
	helperEnv     = "QINFRA_SPOOL_CRASH_HELPER"
	helperPathEnv = "QINFRA_SPOOL_CRASH_PATH"
)

// markerRef is the set item through which the crash test learns which
// inventory a stored set belongs to.
var markerRef = inventory.Ref{Kind: inventory.KindOS, Key: "crash-test-seq"}

// crashSet is the set the helper stores with the inventory of seq: a marker
// naming seq, plus items whose hashes follow seq so that each set differs
// from the previous one in a few places, as a delta would.
func crashSet(seq uint64) inventory.Set {
	s := make(inventory.Set, 41)
	var m [8]byte
	binary.BigEndian.PutUint64(m[:], seq)
	s[markerRef] = m[:]
	for i := range 40 {
		h := fmt.Sprintf("%d", uint64(i)*seq%7)
		s[inventory.Ref{Kind: inventory.KindPackage, Key: strconv.Itoa(i)}] = []byte(h)
	}
	return s
}

// TestHelperProcess is not a test: TestCrashSafety runs the test binary
// with it selected to get a process that appends until it is killed. It
// prints "seq N" after each Append returns (N is durable from then on) and
// "ack N" before each Ack call (entries up to N may be gone from then on).
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestCrashSafety")
	}
	s, err := Open(os.Getenv(helperPathEnv), Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: open: %v\n", err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		var seq uint64
		switch {
		case i%5 == 0:
			// Single writer: the seq AppendInventory will assign is known.
			next := s.LastSeq() + 1
			seq, err = s.AppendInventory(inventoryMsg(nil, i%10 == 0), crashSet(next))
			if err == nil && seq != next {
				err = fmt.Errorf("AppendInventory assigned %d, expected %d", seq, next)
			}
		default:
			seq, err = s.Append(result("crash", 50+i%200), setResultSeq)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "helper: append: %v\n", err)
			os.Exit(2)
		}
		// One write call per line, so a kill cannot leave half a line that
		// reads as a smaller number.
		fmt.Fprintf(os.Stdout, "seq %d\n", seq)
		if i%7 == 6 && seq > 10 {
			ack := seq - 10
			fmt.Fprintf(os.Stdout, "ack %d\n", ack)
			if err := s.Ack(ack); err != nil {
				fmt.Fprintf(os.Stderr, "helper: ack: %v\n", err)
				os.Exit(2)
			}
		}
	}
}

// TestCrashSafety kills a process that is appending to a spool with SIGKILL
// (TerminateProcess on Windows), several times over the same file, and
// checks after each kill that the file opens, that every append the process
// reported complete is there, that the queue has no gaps, and that the
// stored inventory set belongs to the last inventory stored.
//
// A kill tests the process dying between any two instructions; it does not
// test power loss, where durability rests on fsync, which bbolt calls on
// every commit.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	path := filepath.Join(t.TempDir(), "spool.db")
	var (
		maxAckIntent uint64
		maxPrinted   uint64
		lastID       string
	)
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=1", helperPathEnv+"="+path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}

		type line struct {
			kind string
			n    uint64
		}
		lines := make(chan line, 1024)
		readErr := make(chan error, 1)
		go func() {
			defer close(lines)
			r := bufio.NewReader(stdout)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					// A line without its newline was cut by the kill: the
					// write may not have completed, so it proves nothing.
					if err != io.EOF {
						readErr <- err
					}
					return
				}
				f := strings.Fields(l)
				if len(f) != 2 || (f[0] != "seq" && f[0] != "ack") {
					continue // test framework output
				}
				n, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					readErr <- fmt.Errorf("bad line %q", l)
					return
				}
				lines <- line{f[0], n}
			}
		}()

		var (
			printed []uint64
			killAt  <-chan time.Time
			started = time.After(30 * time.Second)
		)
	collect:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break collect
				}
				if l.kind == "ack" {
					maxAckIntent = max(maxAckIntent, l.n)
					continue
				}
				printed = append(printed, l.n)
				if killAt == nil {
					// Let it run for a few hundred ms, varying where in a
					// transaction the kill lands.
					killAt = time.After(time.Duration(200+round*73) * time.Millisecond)
				}
			case <-killAt:
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killAt = nil
			case <-started:
				_ = cmd.Process.Kill()
				t.Fatalf("helper produced no output in 30s; stderr:\n%s", stderr.String())
			}
		}
		err = cmd.Wait()
		select {
		case e := <-readErr:
			t.Fatal(e)
		default:
		}
		if err == nil {
			t.Fatalf("helper exited by itself; stderr:\n%s", stderr.String())
		}
		if len(printed) == 0 {
			t.Fatalf("round %d: helper committed nothing; stderr:\n%s", round, stderr.String())
		}
		for i := 1; i < len(printed); i++ {
			if printed[i] != printed[i-1]+1 {
				t.Fatalf("round %d: helper printed seq %d after %d", round, printed[i], printed[i-1])
			}
		}
		if printed[0] != maxPrinted+1 {
			t.Fatalf("round %d: first seq %d after a previous maximum of %d: seq not kept across a crash",
				round, printed[0], maxPrinted)
		}
		maxPrinted = printed[len(printed)-1]

		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		if lastID != "" && s.ID() != lastID {
			t.Fatalf("round %d: spool ID changed across a crash", round)
		}
		lastID = s.ID()
		if q := s.Stats().Quarantined; q != 0 {
			t.Fatalf("round %d: %d entries damaged by a kill", round, q)
		}
		last := s.LastSeq()
		if last < maxPrinted {
			t.Fatalf("round %d: LastSeq %d below the committed %d", round, last, maxPrinted)
		}
		es, err := s.Pending(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			t.Fatalf("round %d: spool empty after kill", round)
		}
		for i := 1; i < len(es); i++ {
			if es[i].Seq != es[i-1].Seq+1 {
				t.Fatalf("round %d: gap in the queue between %d and %d", round, es[i-1].Seq, es[i].Seq)
			}
		}
		if es[len(es)-1].Seq != last {
			t.Fatalf("round %d: queue ends at %d, LastSeq is %d", round, es[len(es)-1].Seq, last)
		}
		// Nothing acknowledged-to-be-kept is lost: every reported seq above
		// the highest ack the helper may have made is still queued.
		if first := max(maxAckIntent+1, printed[0]); es[0].Seq > first {
			t.Fatalf("round %d: queue starts at %d, but %d was committed and never acknowledged",
				round, es[0].Seq, first)
		}
		// The set and the queue moved together: the set names an inventory
		// whose entry, if still queued, is an inventory, and no inventory
		// was queued after it.
		set, err := s.LastSet()
		if err != nil {
			t.Fatal(err)
		}
		m := set[markerRef]
		if len(m) != 8 {
			t.Fatalf("round %d: stored set has no marker (%d items)", round, len(set))
		}
		setSeq := binary.BigEndian.Uint64(m)
		if !setsEqual(set, crashSet(setSeq)) {
			t.Fatalf("round %d: stored set is a mix, not the set of inventory %d", round, setSeq)
		}
		for _, e := range es {
			isInv := e.Msg.GetInventory() != nil
			if e.Seq == setSeq && !isInv {
				t.Fatalf("round %d: set names seq %d, which is not an inventory", round, setSeq)
			}
			if e.Seq > setSeq && isInv {
				t.Fatalf("round %d: inventory %d queued, but the set is still that of %d", round, e.Seq, setSeq)
			}
			if isInv && e.Msg.GetInventory().GetSeq() != e.Seq {
				t.Fatalf("round %d: inventory stored under %d carries seq %d", round, e.Seq, e.Msg.GetInventory().GetSeq())
			}
		}
		t.Logf("round %d: %d appends reported, queue %d..%d, set of %d", round, len(printed), es[0].Seq, last, setSeq)
		maxPrinted = last // the next helper continues from the durable LastSeq
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
