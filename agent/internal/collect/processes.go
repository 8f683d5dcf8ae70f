package collect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// processesCollector reports what runs on the host: one item per executable,
// keyed by its path, with how many processes run it and as which users. It
// reads the host's /proc under the root, so in a DaemonSet it sees the host's
// processes when the host's /proc is there (hostPID, or the host's root
// mounted with its submounts).
//
// A process whose executable the agent may not read (another user's, when
// the agent is not root) and kernel threads, which have none, are left out.
type processesCollector struct{}

func (processesCollector) Name() string { return "processes" }

func (processesCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	procs, err := readProcesses(ctx, h)
	if err != nil {
		return nil, err
	}
	names := loadOwnerNames(h)
	bodies := aggregateProcesses(procs, names.users)
	items := make([]*commonv1.Item, 0, len(bodies))
	for _, p := range bodies {
		it, err := sealed(inventory.KindProcess, p.GetExe(), p)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// procInfo is what the inventory keeps of one process.
type procInfo struct {
	pid  int
	exe  string
	comm string
	uid  uint32
}

// hostProc is the host's /proc as seen from this process, and its processes.
type hostProc struct {
	dir  string
	pids []int
}

// openHostProc lists the processes of the host's /proc. A root without a
// /proc (an image, a test root) has none and that is not an error.
func openHostProc(h HostFS) (hostProc, error) {
	dir, err := h.resolve("/proc")
	if errors.Is(err, fs.ErrNotExist) {
		return hostProc{}, nil
	}
	if err != nil {
		return hostProc{}, err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return hostProc{}, fmt.Errorf("read /proc: %w", err)
	}
	p := hostProc{dir: dir}
	for _, de := range des {
		if pid, err := strconv.Atoi(de.Name()); err == nil && pid > 0 && de.IsDir() {
			p.pids = append(p.pids, pid)
		}
	}
	slices.Sort(p.pids)
	return p, nil
}

// path returns where the file name of process pid is.
func (p hostProc) path(pid int, name string) string {
	return filepath.Join(p.dir, strconv.Itoa(pid), name)
}

// readProcesses reads every process the agent can see. Processes come and go
// while /proc is read: one that vanished or that the agent may not inspect
// is skipped.
func readProcesses(ctx context.Context, h HostFS) ([]procInfo, error) {
	hp, err := openHostProc(h)
	if err != nil {
		return nil, err
	}
	var out []procInfo
	for _, pid := range hp.pids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		exe, err := os.Readlink(hp.path(pid, "exe"))
		if err != nil || exe == "" {
			continue
		}
		comm, err := os.ReadFile(hp.path(pid, "comm"))
		if err != nil {
			continue
		}
		f, err := os.Open(hp.path(pid, "status"))
		if err != nil {
			continue
		}
		uid, err := parseProcStatusUID(f)
		f.Close()
		if err != nil {
			continue
		}
		out = append(out, procInfo{pid: pid, exe: exe, comm: strings.TrimSuffix(string(comm), "\n"), uid: uid})
	}
	return out, nil
}

// parseProcStatusUID returns the real user id from /proc/PID/status: the
// first of the four ids on its "Uid:" line.
func parseProcStatusUID(r io.Reader) (uint32, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("status: Uid %q: %w", f[0], err)
		}
		return uint32(uid), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("status: no Uid line")
}

// aggregateProcesses groups processes by executable, sorted by it. Users are
// named from the host's passwd (users), or by number where it has no name.
// Texts the kernel reports as bytes are made valid UTF-8, as the wire format
// requires.
func aggregateProcesses(procs []procInfo, users map[uint32]string) []*commonv1.Process {
	type agg struct {
		name  string
		users map[string]bool
		count uint32
	}
	byExe := map[string]*agg{}
	for _, p := range procs {
		exe := strings.ToValidUTF8(p.exe, "\uFFFD")
		comm := strings.ToValidUTF8(p.comm, "\uFFFD")
		a := byExe[exe]
		if a == nil {
			a = &agg{name: comm, users: map[string]bool{}}
			byExe[exe] = a
		}
		a.name = min(a.name, comm)
		user, ok := users[p.uid]
		if !ok {
			user = strconv.FormatUint(uint64(p.uid), 10)
		}
		a.users[user] = true
		a.count++
	}
	out := make([]*commonv1.Process, 0, len(byExe))
	for _, exe := range slices.Sorted(maps.Keys(byExe)) {
		a := byExe[exe]
		out = append(out, &commonv1.Process{
			Exe:   exe,
			Name:  a.name,
			Users: slices.Sorted(maps.Keys(a.users)),
			Count: a.count,
		})
	}
	return out
}
