package collect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// fakeLister is a running systemd's unit list.
type fakeLister struct {
	units  []sdbus.UnitStatus
	err    error
	closed bool
}

func (f *fakeLister) ListUnitsContext(context.Context) ([]sdbus.UnitStatus, error) {
	return f.units, f.err
}
func (f *fakeLister) Close() { f.closed = true }

// liveRoot lays out unit files: enabled and disabled services, an alias, a
// template and a timer.
func liveRoot(t *testing.T) string {
	root := t.TempDir()
	const usr = "/usr/lib/systemd/system"
	writeFile(t, root, usr+"/ssh.service", "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n")
	symlink(t, root, usr+"/ssh.service", "/etc/systemd/system/multi-user.target.wants/ssh.service")
	symlink(t, root, usr+"/ssh.service", "/etc/systemd/system/sshd.service")
	writeFile(t, root, usr+"/cron.service", "[Service]\nExecStart=/usr/sbin/cron\n[Install]\nWantedBy=multi-user.target\n")
	writeFile(t, root, usr+"/getty@.service", "[Service]\nExecStart=/sbin/agetty %I\n[Install]\nWantedBy=getty.target\n")
	writeFile(t, root, usr+"/apt-daily.timer", "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n")
	writeFile(t, root, usr+"/apt-daily.service", "[Service]\nType=oneshot\nExecStart=/usr/bin/true\n")
	return root
}

// states describes the items as "name unit-file-state active/sub".
func states(items []*commonv1.Item) []string {
	var out []string
	for _, it := range items {
		s := it.GetService()
		out = append(out, fmt.Sprintf("%s %s %s/%s", s.GetName(), s.GetUnitFileState(), s.GetActiveState(), s.GetSubState()))
	}
	return out
}

func TestSystemdMergeUnitStates(t *testing.T) {
	root := liveRoot(t)
	l := &fakeLister{units: []sdbus.UnitStatus{
		{Name: "ssh.service", LoadState: "loaded", ActiveState: "active", SubState: "running"},
		{Name: "apt-daily.timer", LoadState: "loaded", ActiveState: "active", SubState: "waiting"},
		{Name: "apt-daily.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
		{Name: "getty@tty1.service", LoadState: "loaded", ActiveState: "active", SubState: "running"},
		{Name: "run-u42.service", LoadState: "loaded", ActiveState: "active", SubState: "running"},
	}}
	c := systemdLiveCollector{dial: func(context.Context, HostFS) (unitLister, error) { return l, nil }}
	items, err := c.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	if !l.closed {
		t.Error("connection not closed")
	}
	diffSets(t, "states", []string{
		"apt-daily.service static inactive/dead",
		"apt-daily.timer disabled active/waiting",
		"cron.service disabled inactive/dead", // not loaded
		"getty@.service disabled /",           // a template is never loaded itself
		"ssh.service enabled active/running",
		"sshd.service alias /", // listed under its primary name only
	}, lines(strings.Join(states(items), "\n")))

	// An error of the running systemd is the collector's, without items:
	// reporting them stateless would change every one.
	l.err = errors.New("timeout")
	if items, err := c.Collect(context.Background(), HostFS{Root: root}); err == nil || items != nil {
		t.Errorf("list error: %d items, %v", len(items), err)
	}
	c.dial = func(context.Context, HostFS) (unitLister, error) { return nil, errors.New("refused") }
	if items, err := c.Collect(context.Background(), HostFS{Root: root}); err == nil || items != nil {
		t.Errorf("dial error: %d items, %v", len(items), err)
	}
}

// TestSystemdNotRunning: where systemd does not run (this test's root, and
// a container), the unit files are reported without states and no bus is
// dialled.
func TestSystemdNotRunning(t *testing.T) {
	root := liveRoot(t)
	items, err := newSystemdLiveCollector().Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states(items) {
		if !strings.HasSuffix(s, " /") {
			t.Errorf("state without a running systemd: %s", s)
		}
	}
	// Booted, but no socket the agent may use under a host root: still no
	// states and no error. systemd's private socket is not used there.
	mkdir(t, root, "/run/systemd/system")
	ln, err := net.Listen("unix", filepath.Join(root, "/run/systemd/private"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if l, err := dialSystemd(context.Background(), HostFS{Root: root}); l != nil || err != nil {
		t.Errorf("dial under a host root without a bus: %v, %v", l, err)
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		if l, err := dialSystemd(context.Background(), HostFS{Root: "/"}); l != nil || err != nil {
			t.Errorf("dial on this machine without systemd: %v, %v", l, err)
		}
	}
}

// fakeManager serves org.freedesktop.systemd1.Manager.ListUnits on a bus.
type fakeManager struct{ units []unitTuple }

// unitTuple is ListUnits' (ssssssouso) element.
type unitTuple struct {
	Name, Description, LoadState, ActiveState, SubState, Followed string
	Path                                                          dbus.ObjectPath
	JobID                                                         uint32
	JobType                                                       string
	JobPath                                                       dbus.ObjectPath
}

func (m fakeManager) ListUnits() ([]unitTuple, *dbus.Error) { return m.units, nil }

// TestSystemdOverRealBus runs a real dbus-daemon on a socket at
// <root>/run/dbus/system_bus_socket, as a DaemonSet given the host's bus
// sees it, with a fake systemd manager on it, and collects through it.
func TestSystemdOverRealBus(t *testing.T) {
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon not installed")
	}
	root := liveRoot(t)
	mkdir(t, root, "/run/systemd/system")
	mkdir(t, root, "/run/dbus")
	sock := filepath.Join(root, "/run/dbus/system_bus_socket")
	conf := filepath.Join(t.TempDir(), "bus.conf")
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("dbus-daemon did not create its socket")
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx := context.Background()
	h := HostFS{Root: root}
	// On the bus but without systemd: an error.
	if _, err := newSystemdLiveCollector().Collect(ctx, h); err == nil {
		t.Error("bus without systemd: no error")
	}

	mgr, err := dialBus(ctx, sock, true)
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	if err := mgr.Export(fakeManager{units: []unitTuple{
		{Name: "ssh.service", LoadState: "loaded", ActiveState: "active", SubState: "running", Path: "/org/freedesktop/systemd1/unit/ssh_2eservice", JobPath: "/"},
		{Name: "cron.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed", Path: "/org/freedesktop/systemd1/unit/cron_2eservice", JobPath: "/"},
	}}, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	if reply, err := mgr.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.systemd1: %v, %v", reply, err)
	}

	items, err := newSystemdLiveCollector().Collect(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	diffSets(t, "states", []string{
		"apt-daily.service static inactive/dead",
		"apt-daily.timer disabled inactive/dead",
		"cron.service disabled failed/failed",
		"getty@.service disabled /",
		"ssh.service enabled active/running",
		"sshd.service alias /",
	}, lines(strings.Join(states(items), "\n")))
}

func TestDBusEscape(t *testing.T) {
	if got := dbusEscape("/host/run/dbus/system bus;x=1,ü"); got != "/host/run/dbus/system%20bus%3bx%3d1%2c%c3%bc" {
		t.Errorf("escaped %q", got)
	}
}
