package collect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

func TestParseProcStatusUID(t *testing.T) {
	const status = "Name:\tsshd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t612\nPid:\t612\nPPid:\t1\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n"
	uid, err := parseProcStatusUID(strings.NewReader(status))
	if err != nil || uid != 1000 {
		t.Errorf("uid %d, %v; want the real uid 1000", uid, err)
	}
	for _, bad := range []string{"", "Name:\tx\n", "Uid:\n", "Uid:\t-1\t0\t0\t0\n"} {
		if _, err := parseProcStatusUID(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestAggregateProcesses(t *testing.T) {
	got := aggregateProcesses([]procInfo{
		{pid: 700, exe: "/usr/sbin/nginx", comm: "nginx", uid: 0},
		{pid: 701, exe: "/usr/sbin/nginx", comm: "nginx", uid: 33},
		{pid: 702, exe: "/usr/sbin/nginx", comm: "nginx", uid: 33},
		{pid: 800, exe: "/usr/bin/python3.11", comm: "worker", uid: 4242},
		{pid: 801, exe: "/usr/bin/python3.11", comm: "app", uid: 1000},
		{pid: 900, exe: "/opt/\xffbad (deleted)", comm: "bad\xfe", uid: 0},
	}, map[uint32]string{0: "root", 33: "www-data", 1000: "deploy"})
	want := []*commonv1.Process{
		{Exe: "/opt/\uFFFDbad (deleted)", Name: "bad\uFFFD", Users: []string{"root"}, Count: 1},
		{Exe: "/usr/bin/python3.11", Name: "app", Users: []string{"4242", "deploy"}, Count: 2},
		{Exe: "/usr/sbin/nginx", Name: "nginx", Users: []string{"root", "www-data"}, Count: 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("process %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

// TestProcessesHostRoot reads a /proc laid out under a host root, with
// kernel threads (no exe link) and a process that vanished (no status).
func TestProcessesHostRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n")
	proc := func(pid int, exe, comm string, uid int) {
		if exe != "" {
			symlink(t, root, exe, fmt.Sprintf("/proc/%d/exe", pid))
		}
		writeFile(t, root, fmt.Sprintf("/proc/%d/comm", pid), comm+"\n")
		if uid >= 0 {
			writeFile(t, root, fmt.Sprintf("/proc/%d/status", pid), fmt.Sprintf("Name:\t%s\nUid:\t%d\t%d\t%d\t%d\n", comm, uid, uid, uid, uid))
		}
	}
	proc(1, "/usr/lib/systemd/systemd", "systemd", 0)
	proc(2, "", "kthreadd", 0)
	proc(612, "/usr/sbin/sshd", "sshd", 0)
	proc(700, "/usr/sbin/nginx", "nginx", 0)
	proc(701, "/usr/sbin/nginx", "nginx", 33)
	proc(999, "/usr/bin/gone", "gone", -1)
	symlink(t, root, "1", "/proc/self")
	writeFile(t, root, "/proc/cpuinfo", "processor\t: 0\n")

	items, err := processesCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		p := it.GetProcess()
		got = append(got, fmt.Sprintf("%s %s %s %v %d", it.GetKey(), p.GetExe(), p.GetName(), p.GetUsers(), p.GetCount()))
	}
	want := []string{
		"/usr/lib/systemd/systemd /usr/lib/systemd/systemd systemd [root] 1",
		"/usr/sbin/nginx /usr/sbin/nginx nginx [root www-data] 2",
		"/usr/sbin/sshd /usr/sbin/sshd sshd [root] 1",
	}
	diffSets(t, "processes", want, got)

	items, err = processesCollector{}.Collect(context.Background(), HostFS{Root: t.TempDir()})
	if err != nil || len(items) != 0 {
		t.Errorf("no /proc: %v, %v", items, err)
	}
}

// TestProcessesLive checks the collector on this machine against processes
// the test starts itself and against ps: other programs come and go, so
// only those are compared exactly.
func TestProcessesLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	dir := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	// A private copy of sleep, so that no other program's processes count.
	exe := filepath.Join(dir, "qinfra-test-sleep")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for range 3 {
		c := exec.Command(exe, "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	defer func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}()
	items, err := processesCollector{}.Collect(context.Background(), HostFS{Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	var p *commonv1.Process
	for _, it := range items {
		if it.GetKey() == exe {
			p = it.GetProcess()
		}
	}
	if p == nil {
		t.Fatalf("%s not reported among %d executables", exe, len(items))
	}
	if p.GetCount() != 3 || p.GetName() != "qinfra-test-sle" || !slices.Equal(p.GetUsers(), []string{me.Username}) {
		t.Errorf("test processes: %v", p)
	}
	// ps agrees on their name and user.
	out := command(t, "ps", "-o", "comm=,ruser=", "-p", fmt.Sprintf("%d,%d,%d", cmds[0].Process.Pid, cmds[1].Process.Pid, cmds[2].Process.Pid))
	for _, l := range lines(out) {
		if f := strings.Fields(l); len(f) != 2 || f[0] != p.GetName() || f[1] != me.Username {
			t.Errorf("ps says %q", l)
		}
	}
}
