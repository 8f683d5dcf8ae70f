package collect

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// portsCollector reports the host's listening sockets, keyed
// "<protocol>/<address>:<port>" ("tcp/0.0.0.0:22", "udp/[::]:53"): TCP
// sockets in the LISTEN state and bound UDP sockets that are not connected,
// the sets `ss -ltn` and `ss -lun` list.
//
// The sockets are those of the network namespace of the host's PID 1, read
// from /proc/1/net under the root, so that an agent in a DaemonSet reports
// the host's ports rather than its pod's (falling back to /proc/net, the
// agent's own namespace, where PID 1's is not visible). A socket is
// attributed to a process through the /proc/PID/fd links the agent can read.
type portsCollector struct{}

func (portsCollector) Name() string { return "ports" }

// procNetFiles are the socket tables read, with their protocol.
var procNetFiles = []struct{ file, protocol string }{
	{"tcp", "tcp"}, {"tcp6", "tcp"}, {"udp", "udp"}, {"udp6", "udp"},
}

func (portsCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	netDir := "/proc/1/net"
	if _, exists, _ := h.chase(netDir+"/tcp", true, true); !exists {
		netDir = "/proc/net"
	}
	var socks []procSocket
	for _, f := range procNetFiles {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := netDir + "/" + f.file
		s, _, err := readHostFile(h, p, func(r io.Reader) ([]procSocket, error) { return parseProcNet(r, f.protocol) })
		if err != nil {
			return nil, err
		}
		socks = append(socks, s...)
	}
	socks = slices.DeleteFunc(socks, func(s procSocket) bool { return !s.listening() })
	if len(socks) == 0 {
		return nil, nil
	}
	inodes := map[uint64]bool{}
	for _, s := range socks {
		inodes[s.inode] = true
	}
	owners, err := socketOwners(ctx, h, inodes)
	if err != nil {
		return nil, err
	}
	ports := listeningPorts(socks, owners)
	items := make([]*commonv1.Item, 0, len(ports))
	for _, p := range ports {
		it, err := sealed(inventory.KindPort, portKey(p), p)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// portKey is the item key of a listening port.
func portKey(p *commonv1.ListeningPort) string {
	addr, err := netip.ParseAddr(p.GetAddress())
	if err != nil {
		return p.GetProtocol() + "/" + p.GetAddress() + ":" + strconv.FormatUint(uint64(p.GetPort()), 10)
	}
	return p.GetProtocol() + "/" + netip.AddrPortFrom(addr, uint16(p.GetPort())).String()
}

// Kernel socket states, from include/net/tcp_states.h.
const (
	tcpListen = 0x0A
	tcpClose  = 0x07 // an unconnected UDP socket
)

// procSocket is one line of /proc/net/{tcp,tcp6,udp,udp6}.
type procSocket struct {
	protocol string
	addr     netip.Addr
	port     uint16
	state    uint8
	uid      uint32
	inode    uint64
}

// listening reports whether ss -l would list the socket: a listening TCP
// socket, or a UDP socket bound to a port and not connected.
func (s procSocket) listening() bool {
	switch s.protocol {
	case "tcp":
		return s.state == tcpListen
	case "udp":
		return s.state == tcpClose && s.port != 0
	}
	return false
}

// parseProcNet parses a socket table of /proc/net: a header line, then one
// line per socket of "sl: local rem st tx:rx tr:when retrnsmt uid timeout
// inode ...", addresses as hexadecimal words in the kernel's byte order
// (which is this process's: the kernel is shared) and ports as hexadecimal
// numbers.
func parseProcNet(r io.Reader, protocol string) ([]procSocket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	var out []procSocket
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (line == 1 && f[0] == "sl") {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 10", line, len(f))
		}
		addr, port, err := parseProcNetAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", line, err)
		}
		state, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state: %w", line, err)
		}
		uid, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: uid: %w", line, err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode: %w", line, err)
		}
		out = append(out, procSocket{protocol: protocol, addr: addr, port: port, state: uint8(state), uid: uint32(uid), inode: inode})
	}
	return out, sc.Err()
}

// parseProcNetAddr parses "0100007F:0016": an IPv4 (8 hex digits) or IPv6
// (32) address as 32-bit words in the kernel's byte order, and a port.
func parseProcNetAddr(s string) (netip.Addr, uint16, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(p) != 4 {
		return netip.Addr{}, 0, fmt.Errorf("%q is not address:port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("port %q: %w", p, err)
	}
	if len(a) != 8 && len(a) != 32 {
		return netip.Addr{}, 0, fmt.Errorf("address %q: %d hex digits", a, len(a))
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("address %q: %w", a, err)
	}
	// Each word was printed as a number; put it back in memory order.
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return addr, uint16(port), nil
}

// socketOwner is the process a socket is attributed to.
type socketOwner struct {
	pid  int
	comm string
}

// socketOwners maps the socket inodes wanted to the lowest pid holding each,
// from the "socket:[inode]" links in /proc/PID/fd. Processes the agent may
// not inspect, or that exit meanwhile, are skipped.
func socketOwners(ctx context.Context, h HostFS, wanted map[uint64]bool) (map[uint64]socketOwner, error) {
	hp, err := openHostProc(h)
	if err != nil {
		return nil, err
	}
	owners := map[uint64]socketOwner{}
	for _, pid := range hp.pids { // ascending: the first holder found is the lowest
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fdDir := hp.path(pid, "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := socketInode(target)
			if !ok || !wanted[inode] {
				continue
			}
			if _, done := owners[inode]; done {
				continue
			}
			comm, _ := os.ReadFile(hp.path(pid, "comm"))
			owners[inode] = socketOwner{pid: pid, comm: strings.ToValidUTF8(strings.TrimSuffix(string(comm), "\n"), "\uFFFD")}
		}
	}
	return owners, nil
}

// socketInode parses the target of a /proc/PID/fd link to a socket.
func socketInode(target string) (uint64, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// listeningPorts merges listening sockets into one port per protocol,
// address and port (several sockets share one with SO_REUSEPORT), owned by
// the lowest pid among their holders and the least uid. They are sorted by
// key.
func listeningPorts(socks []procSocket, owners map[uint64]socketOwner) []*commonv1.ListeningPort {
	byKey := map[string]*commonv1.ListeningPort{}
	for _, s := range socks {
		if !s.listening() {
			continue
		}
		p := &commonv1.ListeningPort{Protocol: s.protocol, Address: s.addr.String(), Port: uint32(s.port), Uid: s.uid}
		if o, ok := owners[s.inode]; ok {
			p.Pid, p.Process = uint32(o.pid), o.comm
		}
		k := portKey(p)
		old, ok := byKey[k]
		if !ok {
			byKey[k] = p
			continue
		}
		old.Uid = min(old.Uid, p.Uid)
		if p.Pid != 0 && (old.Pid == 0 || p.Pid < old.Pid) {
			old.Pid, old.Process = p.Pid, p.Process
		}
	}
	out := make([]*commonv1.ListeningPort, 0, len(byKey))
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, byKey[k])
	}
	return out
}
