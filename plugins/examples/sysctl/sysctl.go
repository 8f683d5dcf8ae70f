package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/quantumlayer/qinfra/plugins/collector"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

const (
	pluginName    = "sysctl"
	pluginVersion = "1.0.0"
	kindSysctl    = "sysctl"
)

// parameters are the kernel parameters reported, where the kernel has them.
var parameters = []string{
	"fs.protected_fifos",
	"fs.protected_hardlinks",
	"fs.protected_regular",
	"fs.protected_symlinks",
	"fs.suid_dumpable",
	"kernel.dmesg_restrict",
	"kernel.kexec_load_disabled",
	"kernel.kptr_restrict",
	"kernel.modules_disabled",
	"kernel.perf_event_paranoid",
	"kernel.randomize_va_space",
	"kernel.sysrq",
	"kernel.unprivileged_bpf_disabled",
	"kernel.unprivileged_userns_clone",
	"kernel.yama.ptrace_scope",
	"net.core.bpf_jit_harden",
	"net.ipv4.conf.all.accept_redirects",
	"net.ipv4.conf.all.accept_source_route",
	"net.ipv4.conf.all.log_martians",
	"net.ipv4.conf.all.rp_filter",
	"net.ipv4.conf.all.send_redirects",
	"net.ipv4.conf.default.accept_redirects",
	"net.ipv4.icmp_echo_ignore_broadcasts",
	"net.ipv4.ip_forward",
	"net.ipv4.tcp_syncookies",
	"net.ipv6.conf.all.accept_ra",
	"net.ipv6.conf.all.accept_redirects",
	"net.ipv6.conf.all.forwarding",
}

// sysctlCollector implements collector.Collector.
type sysctlCollector struct{}

func (sysctlCollector) Info(context.Context) (collector.Info, error) {
	return collector.Info{Name: pluginName, Version: pluginVersion, Kinds: []string{kindSysctl}}, nil
}

func (sysctlCollector) Collect(ctx context.Context, root string) ([]*commonv1.Item, error) {
	var items []*commonv1.Item
	var errs []error
	for _, p := range parameters {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v, err := readParameter(root, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not in this kernel, or not built in
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		items = append(items, collector.Item(pluginName, kindSysctl, p, map[string]string{"value": v}))
	}
	return items, errors.Join(errs...)
}

// readParameter reads the value of a kernel parameter as sysctl(8) prints
// it: fields separated by one tab become one space.
func readParameter(root, name string) (string, error) {
	f, err := os.Open(filepath.Join(root, "proc", "sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}
