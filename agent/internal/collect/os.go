package collect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/shirou/gopsutil/v3/common"
	"github.com/shirou/gopsutil/v3/host"
)

// osCollector reports the host's facts as one item, key "host".
//
// The distribution comes from os-release under the root, for Root "/" too:
// gopsutil's platform detection reads the agent's own /etc and prefers other
// files (Debian's debian_version gives "12.11" where os-release says "12"), so
// using it only for Root "/" would make the same host report differently when
// the agent moves into a DaemonSet. The kernel, architecture, boot time and
// virtualization come from gopsutil: a container shares the host's kernel.
type osCollector struct{}

func (osCollector) Name() string { return "os" }

func (osCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	facts := &commonv1.OSFacts{Os: runtime.GOOS}
	var errs []error

	rel, err := readOSRelease(h)
	if err != nil {
		errs = append(errs, err)
	}
	facts.Platform = rel["ID"]
	facts.PlatformVersion = rel["VERSION_ID"]
	facts.PrettyName = rel["PRETTY_NAME"]
	facts.VersionCodename = rel["VERSION_CODENAME"]
	facts.PlatformFamily = platformFamily(rel["ID"], rel["ID_LIKE"])

	if facts.Hostname, err = hostname(h); err != nil {
		errs = append(errs, err)
	}
	facts.MachineId = firstLine(h, "/etc/machine-id", "/var/lib/dbus/machine-id")

	gctx := gopsutilContext(ctx, h)
	if facts.KernelVersion, err = host.KernelVersionWithContext(gctx); err != nil {
		errs = append(errs, fmt.Errorf("kernel version: %w", err))
	}
	if facts.KernelArch, err = host.KernelArch(); err != nil {
		errs = append(errs, fmt.Errorf("kernel arch: %w", err))
	}
	if facts.BootTime, err = host.BootTimeWithContext(gctx); err != nil {
		errs = append(errs, fmt.Errorf("boot time: %w", err))
	}
	// Virtualization is best effort: where gopsutil cannot tell, the fields
	// stay empty rather than failing the host's facts.
	facts.VirtualizationSystem, facts.VirtualizationRole, _ = host.VirtualizationWithContext(gctx)

	// Windows has no os-release: its edition and build come from gopsutil,
	// and its machine id is the MachineGuid gopsutil reads.
	if runtime.GOOS == "windows" {
		if name, family, version, err := host.PlatformInformationWithContext(gctx); err == nil {
			facts.Platform, facts.PrettyName, facts.PlatformFamily, facts.PlatformVersion = "windows", name, family, version
		}
		if id, err := host.HostIDWithContext(gctx); err == nil && facts.MachineId == "" {
			facts.MachineId = id
		}
	}

	pf := readPlatform(h)
	facts.CloudProvider, facts.ProductName, facts.SysVendor, facts.Kubernetes = pf.cloudProvider, pf.productName, pf.sysVendor, pf.kubernetes

	it, err := sealed(inventory.KindOS, "host", facts)
	if err != nil {
		return nil, err
	}
	return []*commonv1.Item{it}, errors.Join(errs...)
}

// gopsutilContext points gopsutil at the host's /proc, /sys and /etc under
// the root when the root is not "/", so that virtualization is detected for
// the host rather than for the agent's container.
func gopsutilContext(ctx context.Context, h HostFS) context.Context {
	if h.Root == "" || h.Root == "/" {
		return ctx
	}
	env := common.EnvMap{common.HostRootEnvKey: h.Path("/")}
	for key, dir := range map[common.EnvKeyType]string{
		common.HostProcEnvKey: "/proc",
		common.HostSysEnvKey:  "/sys",
		common.HostEtcEnvKey:  "/etc",
		common.HostVarEnvKey:  "/var",
		common.HostRunEnvKey:  "/run",
		common.HostDevEnvKey:  "/dev",
	} {
		if fi, err := os.Stat(h.Path(dir)); err == nil && fi.IsDir() {
			env[key] = h.Path(dir)
		}
	}
	return context.WithValue(ctx, common.EnvKey, env)
}

// readOSRelease reads os-release(5) from its two places, /etc first.
func readOSRelease(h HostFS) (map[string]string, error) {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		rel, found, err := readHostFile(h, p, parseOSRelease)
		if err != nil {
			return nil, err
		}
		if found {
			return rel, nil
		}
	}
	return map[string]string{}, nil
}

// hostname returns the host's name: the kernel's for Root "/", else the one
// the host boots with, as systemd sets it from /etc/hostname, falling back to
// the kernel's as seen through the host's /proc, then the agent's own.
func hostname(h HostFS) (string, error) {
	if h.Root != "" && h.Root != "/" {
		if name := firstLine(h, "/etc/hostname", "/proc/sys/kernel/hostname"); name != "" {
			return name, nil
		}
	}
	name, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("hostname: %w", err)
	}
	return name, nil
}

// firstLine returns the first line of the first of the files that has one,
// skipping comments and blank lines (hostname(5) allows comments).
func firstLine(h HostFS, paths ...string) string {
	for _, p := range paths {
		b, err := h.readFileLimit(p, 4096)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && line[0] != '#' {
				return line
			}
		}
	}
	return ""
}

// parseOSRelease parses os-release(5): KEY=value lines where the value may be
// quoted with " or ' and may use shell escapes inside double quotes or
// unquoted. Lines that are not assignments are ignored, as systemd does.
func parseOSRelease(r io.Reader) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !isEnvName(key) {
			continue
		}
		m[key] = unquoteShell(strings.TrimSpace(value))
	}
	return m, sc.Err()
}

// unquoteShell removes the quoting of a single shell word.
func unquoteShell(v string) string {
	var b strings.Builder
	var quote byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				b.WriteByte(c)
			}
		case c == '\\' && i+1 < len(v) && (quote == 0 || strings.IndexByte("\"\\$`", v[i+1]) >= 0):
			i++
			b.WriteByte(v[i])
		case quote == '"':
			if c == '"' {
				quote = 0
			} else {
				b.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// platformFamily maps an os-release ID to gopsutil's families, then tries
// the IDs of ID_LIKE, so derivatives gopsutil does not know still group with
// their parent.
func platformFamily(id, idLike string) string {
	for _, c := range append([]string{id}, strings.Fields(idLike)...) {
		switch c {
		case "debian", "ubuntu", "linuxmint", "raspbian", "kylin", "cumuluslinux", "uos", "deepin":
			return "debian"
		case "fedora":
			return "fedora"
		case "rhel", "centos", "ol", "oracle", "redhat", "scientific", "amzn", "amazon", "xenserver", "cloudlinux", "rocky", "almalinux":
			return "rhel"
		case "suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "opensuse-tumbleweed-kubic", "sles", "sled", "caasp":
			return "suse"
		case "gentoo", "slackware", "arch", "exherbo", "alpine", "coreos", "solus", "neokylin":
			return c
		}
	}
	return ""
}
