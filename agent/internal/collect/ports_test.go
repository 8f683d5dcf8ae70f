package collect

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

// procNetWord formats a 4-byte address word as the kernel prints it: the
// word read in the kernel's byte order, in hexadecimal.
func procNetWord(b []byte) string {
	return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b))
}

// procNetAddr formats an address and port as /proc/net/tcp does.
func procNetAddr(ap netip.AddrPort) string {
	var s string
	a := ap.Addr()
	if a.Is4() {
		b := a.As4()
		s = procNetWord(b[:])
	} else {
		b := a.As16()
		for i := 0; i < 16; i += 4 {
			s += procNetWord(b[i : i+4])
		}
	}
	return fmt.Sprintf("%s:%04X", s, ap.Port())
}

// procNetTable writes a socket table as /proc/net/{tcp,udp}[6] shows it.
func procNetTable(socks ...procSocket) string {
	var b strings.Builder
	b.WriteString("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	for i, s := range socks {
		rem := netip.IPv4Unspecified()
		if s.addr.Is6() {
			rem = netip.IPv6Unspecified()
		}
		fmt.Fprintf(&b, "%4d: %s %s %02X 00000000:00000000 00:00000000 00000000 %5d        0 %d 1 0000000000000000 100 0 0 10 0\n",
			i, procNetAddr(netip.AddrPortFrom(s.addr, s.port)), procNetAddr(netip.AddrPortFrom(rem, 0)), s.state, s.uid, s.inode)
	}
	return b.String()
}

func TestParseProcNet(t *testing.T) {
	// Lines as a little-endian kernel writes them (x86-64, arm64).
	const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 3959 1 000000002d747318 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1082 1 00000000ffb3ca91 100 0 0 10 0
   2: 0F02000A:0016 0202000A:C350 01 00000000:00000000 02:000A6A1C 00000000     0        0 7718 4 0000000000000000 20 4 29 10 -1
`
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4855 1 00000000d1cc4a56 100 0 0 10 0
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1084 1 00000000d1cc4a56 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2001 1 00000000d1cc4a56 100 0 0 10 0
`
	const udp = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1534: 00000000:BC70 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 148947 2 0000000005c39cff 0
13249: 0100007F:EA33 0100007F:0009 01 00000000:00000000 00:00000000 00000000     0        0 148946 2 00000000c8d9ae18 0
13250: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 148948 2 00000000c8d9ae18 0
`
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the sample tables are a little-endian kernel's")
	}
	var got []string
	for _, tc := range []struct{ table, protocol string }{{tcp, "tcp"}, {tcp6, "tcp"}, {udp, "udp"}} {
		socks, err := parseProcNet(strings.NewReader(tc.table), tc.protocol)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			got = append(got, fmt.Sprintf("%s %s st=%02X uid=%d inode=%d listening=%v", s.protocol, netip.AddrPortFrom(s.addr, s.port), s.state, s.uid, s.inode, s.listening()))
		}
	}
	want := []string{
		"tcp 127.0.0.1:5432 st=0A uid=101 inode=3959 listening=true",
		"tcp 0.0.0.0:22 st=0A uid=0 inode=1082 listening=true",
		"tcp 10.0.2.15:22 st=01 uid=0 inode=7718 listening=false",
		"tcp [::1]:6379 st=0A uid=0 inode=4855 listening=true",
		"tcp [::]:22 st=0A uid=0 inode=1084 listening=true",
		"tcp [::ffff:127.0.0.1]:8080 st=0A uid=1000 inode=2001 listening=true",
		"udp 0.0.0.0:48240 st=07 uid=0 inode=148947 listening=true",
		"udp 127.0.0.1:59955 st=01 uid=0 inode=148946 listening=false",
		"udp 0.0.0.0:0 st=07 uid=0 inode=148948 listening=false",
	}
	diffSets(t, "sockets", lines(strings.Join(want, "\n")), lines(strings.Join(got, "\n")))

	for name, bad := range map[string]string{
		"few fields": "  0: 0100007F:1538 00000000:0000 0A\n",
		"odd addr":   "  0: 0100007:1538 00000000:0000 0A 0:0 0:0 0 0 0 1\n",
		"not hex":    "  0: 0100007G:1538 00000000:0000 0A 0:0 0:0 0 0 0 1\n",
		"no port":    "  0: 0100007F 00000000:0000 0A 0:0 0:0 0 0 0 1\n",
		"bad state":  "  0: 0100007F:1538 00000000:0000 XYZ 0:0 0:0 0 0 0 1\n",
		"bad uid":    "  0: 0100007F:1538 00000000:0000 0A 0:0 0:0 0 -1 0 1\n",
		"bad inode":  "  0: 0100007F:1538 00000000:0000 0A 0:0 0:0 0 0 0 x\n",
	} {
		if _, err := parseProcNet(strings.NewReader(bad), "tcp"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestPortsHostRoot reads socket tables and fd links laid out under a host
// root: sockets shared by several processes are one port of the lowest pid,
// and a socket no visible process holds has no pid.
func TestPortsHostRoot(t *testing.T) {
	root := t.TempDir()
	sock := func(proto, ap string, state uint8, uid uint32, inode uint64) procSocket {
		a := netip.MustParseAddrPort(ap)
		return procSocket{protocol: proto, addr: a.Addr(), port: a.Port(), state: state, uid: uid, inode: inode}
	}
	writeFile(t, root, "/proc/1/net/tcp", procNetTable(
		sock("tcp", "0.0.0.0:22", tcpListen, 0, 100),
		sock("tcp", "0.0.0.0:80", tcpListen, 33, 200),
		sock("tcp", "0.0.0.0:80", tcpListen, 33, 201), // SO_REUSEPORT
		sock("tcp", "10.0.0.5:22", 0x01, 0, 300),
		sock("tcp", "127.0.0.1:9000", tcpListen, 1000, 400),
	))
	writeFile(t, root, "/proc/1/net/tcp6", procNetTable(sock("tcp", "[::]:22", tcpListen, 0, 101)))
	writeFile(t, root, "/proc/1/net/udp", procNetTable(sock("udp", "127.0.0.53:53", tcpClose, 101, 500), sock("udp", "0.0.0.0:0", tcpClose, 0, 501)))
	// no udp6: IPv6 may be off.
	writeFile(t, root, "/proc/1/comm", "systemd\n")
	for pid, p := range map[int]struct {
		comm   string
		inodes []uint64
	}{
		1:   {"systemd", nil},
		612: {"sshd", []uint64{100, 101}},
		700: {"nginx", []uint64{200, 201}},
		701: {"nginx", []uint64{200, 201}},
		702: {"nginx", []uint64{201}},
		550: {"systemd-resolve", []uint64{500}},
	} {
		writeFile(t, root, fmt.Sprintf("/proc/%d/comm", pid), p.comm+"\n")
		mkdir(t, root, fmt.Sprintf("/proc/%d/fd", pid))
		symlink(t, root, "/dev/null", fmt.Sprintf("/proc/%d/fd/0", pid))
		for i, ino := range p.inodes {
			symlink(t, root, fmt.Sprintf("socket:[%d]", ino), fmt.Sprintf("/proc/%d/fd/%d", pid, i+3))
		}
	}
	items, err := portsCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		p := it.GetPort()
		got = append(got, fmt.Sprintf("%s %s/%s:%d uid=%d pid=%d %s", it.GetKey(), p.GetProtocol(), p.GetAddress(), p.GetPort(), p.GetUid(), p.GetPid(), p.GetProcess()))
	}
	want := []string{
		"tcp/0.0.0.0:22 tcp/0.0.0.0:22 uid=0 pid=612 sshd",
		"tcp/0.0.0.0:80 tcp/0.0.0.0:80 uid=33 pid=700 nginx",
		"tcp/127.0.0.1:9000 tcp/127.0.0.1:9000 uid=1000 pid=0 ",
		"tcp/[::]:22 tcp/:::22 uid=0 pid=612 sshd",
		"udp/127.0.0.53:53 udp/127.0.0.53:53 uid=101 pid=550 systemd-resolve",
	}
	diffSets(t, "ports", want, got)

	// Without PID 1's tables, the agent's own namespace's are read.
	root2 := t.TempDir()
	writeFile(t, root2, "/proc/net/tcp", procNetTable(sock("tcp", "0.0.0.0:443", tcpListen, 0, 9)))
	items, err = portsCollector{}.Collect(context.Background(), HostFS{Root: root2})
	if err != nil || len(items) != 1 || items[0].GetKey() != "tcp/0.0.0.0:443" {
		t.Errorf("/proc/net fallback: %v, %v", items, err)
	}
	// A root without /proc has no ports.
	items, err = portsCollector{}.Collect(context.Background(), HostFS{Root: t.TempDir()})
	if err != nil || len(items) != 0 {
		t.Errorf("no /proc: %v, %v", items, err)
	}
	// A damaged table is an error.
	writeFile(t, root2, "/proc/net/udp", "header\n 0: garbage\n")
	if _, err := (portsCollector{}).Collect(context.Background(), HostFS{Root: root2}); err == nil {
		t.Error("damaged table: no error")
	}
}

// ssPorts lists ss's listening sockets of one protocol as "proto/addr:port"
// keys. ss prints a dual-stack socket on the IPv6 wildcard as "*", and a
// socket bound to a device with "%dev", which /proc/net does not show.
func ssPorts(t *testing.T, protocol, flags string) []string {
	var out []string
	for _, l := range lines(command(t, "ss", flags)) {
		f := strings.Fields(l)
		if len(f) < 5 {
			t.Fatalf("ss line %q", l)
		}
		local := f[3]
		i := strings.LastIndexByte(local, ':')
		host, port := local[:i], local[i+1:]
		if j := strings.IndexByte(host, '%'); j >= 0 {
			host = host[:j]
		}
		host = strings.Trim(host, "[]")
		if host == "*" {
			host = "::"
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			t.Fatalf("ss line %q: port: %v", l, err)
		}
		if n == 0 {
			continue
		}
		out = append(out, protocol+"/"+netip.AddrPortFrom(netip.MustParseAddr(host), uint16(n)).String())
	}
	return out
}

// TestPortsMatchSS compares the collector on this machine with ss, after
// opening sockets of every kind it must tell apart. Other programs open and
// close sockets meanwhile, so a difference is retried a few times.
func TestPortsMatchSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	var listeners []interface{ Close() error }
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	open := func(network, addr string) string {
		var a net.Addr
		if strings.HasPrefix(network, "tcp") {
			l, err := net.Listen(network, addr)
			if err != nil {
				t.Logf("listen %s %s: %v", network, addr, err)
				return ""
			}
			listeners = append(listeners, l)
			a = l.Addr()
		} else {
			c, err := net.ListenPacket(network, addr)
			if err != nil {
				t.Logf("listen %s %s: %v", network, addr, err)
				return ""
			}
			listeners = append(listeners, c)
			a = c.LocalAddr()
		}
		ap := netip.MustParseAddrPort(a.String())
		return network[:3] + "/" + netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	mine := []string{
		open("tcp4", "127.0.0.1:0"),
		open("tcp", ":0"), // dual stack where IPv6 is on
		open("tcp6", "[::1]:0"),
		open("udp4", "127.0.0.1:0"),
		open("udp6", "[::1]:0"),
	}
	conn, err := net.Dial("udp4", "127.0.0.1:9") // connected: not listening
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connected := "udp/" + conn.LocalAddr().String()

	var items []*commonv1.Item
	for attempt := 1; ; attempt++ {
		items, err = portsCollector{}.Collect(context.Background(), HostFS{Root: "/"})
		if err != nil {
			t.Fatal(err)
		}
		checkItems(t, items)
		want := append(ssPorts(t, "tcp", "-ltnH"), ssPorts(t, "udp", "-lunH")...)
		var got []string
		for _, it := range items {
			got = append(got, it.GetKey())
		}
		if slices.Equal(lines(strings.Join(want, "\n")), lines(strings.Join(got, "\n"))) || attempt == 3 {
			diffSets(t, "ss -ltn / ss -lun", lines(strings.Join(want, "\n")), lines(strings.Join(got, "\n")))
			t.Logf("%d listening sockets match ss", len(got))
			break
		}
	}
	byKey := map[string]*commonv1.ListeningPort{}
	for _, it := range items {
		byKey[it.GetKey()] = it.GetPort()
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	for _, k := range mine {
		if k == "" {
			continue
		}
		// The dual-stack listener is on "::"; Unmap made it "::" already.
		p := byKey[k]
		if p == nil {
			t.Errorf("own socket %s not reported", k)
			continue
		}
		if p.GetPid() != uint32(os.Getpid()) || p.GetProcess() != strings.TrimSpace(string(comm)) || p.GetUid() != uint32(os.Getuid()) {
			t.Errorf("own socket %s: pid %d process %q uid %d", k, p.GetPid(), p.GetProcess(), p.GetUid())
		}
	}
	if byKey[connected] != nil {
		t.Errorf("connected UDP socket %s reported as listening", connected)
	}
}

func TestListeningPortsMerge(t *testing.T) {
	a := netip.MustParseAddr("0.0.0.0")
	socks := []procSocket{
		{protocol: "tcp", addr: a, port: 80, state: tcpListen, uid: 33, inode: 1},
		{protocol: "tcp", addr: a, port: 80, state: tcpListen, uid: 0, inode: 2},
		{protocol: "udp", addr: a, port: 80, state: tcpClose, uid: 0, inode: 3},
	}
	got := listeningPorts(socks, map[uint64]socketOwner{1: {9, "b"}, 2: {5, "a"}})
	want := []*commonv1.ListeningPort{
		{Protocol: "tcp", Address: "0.0.0.0", Port: 80, Uid: 0, Pid: 5, Process: "a"},
		{Protocol: "udp", Address: "0.0.0.0", Port: 80},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("port %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func FuzzParseProcNet(f *testing.F) {
	f.Add("  sl  local_address rem_address   st\n   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 3959 1 000000002d747318 100 0 0 10 0\n")
	f.Add("   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4855 1\n")
	f.Add("   0: 00000000:0000 00000000:0000 07 0 0 0 0 0 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		socks, err := parseProcNet(strings.NewReader(s), "udp")
		if err != nil {
			return
		}
		for _, p := range listeningPorts(socks, nil) {
			if _, err := netip.ParseAddr(p.GetAddress()); err != nil {
				t.Fatalf("address %q: %v", p.GetAddress(), err)
			}
			if _, err := sealed("port", portKey(p), p); err != nil {
				t.Fatal(err)
			}
		}
	})
}
