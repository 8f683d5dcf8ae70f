package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// systemdLiveCollector is the systemd collector with the units' active and
// sub states added where the host's systemd runs and the agent can reach it
// over D-Bus. Where it does not run (a container, an image), the unit files
// are reported as the file-only collector finds them.
type systemdLiveCollector struct {
	systemdCollector
	// dial connects to the host's running systemd; a nil lister and nil
	// error mean none runs that the agent may ask.
	dial func(ctx context.Context, h HostFS) (unitLister, error)
}

// unitLister is the part of a systemd D-Bus connection the collector uses.
type unitLister interface {
	ListUnitsContext(ctx context.Context) ([]sdbus.UnitStatus, error)
	Close()
}

func newSystemdLiveCollector() systemdLiveCollector {
	return systemdLiveCollector{dial: dialSystemd}
}

func (c systemdLiveCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	items, err := c.systemdCollector.Collect(ctx, h)
	if err != nil {
		return items, err
	}
	l, err := c.dial(ctx, h)
	if err != nil {
		// Without the states every service would change; report none
		// rather than a whole set of false changes.
		return nil, fmt.Errorf("systemd over D-Bus: %w", err)
	}
	if l == nil {
		return items, nil
	}
	defer l.Close()
	units, err := l.ListUnitsContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd over D-Bus: list units: %w", err)
	}
	return mergeUnitStates(items, units)
}

// mergeUnitStates adds the running manager's states to the unit-file items
// and seals them again. ListUnits lists the loaded units; a unit systemd has
// not loaded is, as `systemctl is-active` says, inactive (dead). Aliases
// (listed under their primary name only) and templates (never loaded
// themselves) are left without a state.
func mergeUnitStates(items []*commonv1.Item, units []sdbus.UnitStatus) ([]*commonv1.Item, error) {
	byName := make(map[string]sdbus.UnitStatus, len(units))
	for _, u := range units {
		byName[u.Name] = u
	}
	for _, it := range items {
		svc := it.GetService()
		if svc == nil || svc.GetUnitFileState() == "alias" || strings.Contains(svc.GetName(), "@.") {
			continue
		}
		if u, ok := byName[svc.GetName()]; ok {
			svc.ActiveState, svc.SubState = u.ActiveState, u.SubState
		} else {
			svc.ActiveState, svc.SubState = "inactive", "dead"
		}
		if err := inventory.Seal(it); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// dialSystemd connects to the systemd of the root, when one runs there
// (sd_booted(3): /run/systemd/system exists). With Root "/" it tries
// systemd's private socket, then the system bus; with another root only the
// host's system bus socket mounted under it, <root>/run/dbus/system_bus_socket,
// so that a DaemonSet asks the host's systemd only when given its bus.
func dialSystemd(ctx context.Context, h HostFS) (unitLister, error) {
	if _, booted, _ := h.chase("/run/systemd/system", true, true); !booted {
		return nil, nil
	}
	type socket struct {
		path  string
		hello bool // a bus wants Hello; systemd's private socket does not
	}
	sockets := []socket{{"/run/dbus/system_bus_socket", true}}
	if h.Root == "" || h.Root == "/" {
		sockets = append([]socket{{"/run/systemd/private", false}}, sockets...)
	}
	var errs []error
	for _, s := range sockets {
		real, exists, err := h.chase(s.path, true, true)
		if err != nil || !exists {
			continue
		}
		p := h.Path(real)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Type() != fs.ModeSocket {
			continue
		}
		conn, err := sdbus.NewConnection(func() (*dbus.Conn, error) { return dialBus(ctx, p, s.hello) })
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.path, err))
			continue
		}
		return conn, nil
	}
	if len(errs) == 0 {
		// systemd runs but its sockets are not where the agent can see
		// them: a DaemonSet without the host's bus.
		return nil, nil
	}
	return nil, errors.Join(errs...)
}

// dialBus opens an authenticated D-Bus connection on the unix socket p.
func dialBus(ctx context.Context, p string, hello bool) (*dbus.Conn, error) {
	conn, err := dbus.Dial("unix:path="+dbusEscape(p), dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	// EXTERNAL with the numeric uid: no user name lookup.
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	if hello {
		if err := conn.Hello(); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return conn, nil
}

// dbusEscape escapes a value of a D-Bus address: bytes other than
// [-0-9A-Za-z_/.\*] become %XX.
func dbusEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z',
			c == '-', c == '_', c == '/', c == '.', c == '\\', c == '*':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}
