package collect

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"golang.org/x/sys/windows"
	winreg "golang.org/x/sys/windows/registry"
)

// uninstallKey lists the programs installed for the whole machine; each
// registry view (64-bit and WOW6432Node) has its own.
const uninstallKey = `SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`

// uninstallValues are the values of an Uninstall entry the inventory uses.
var uninstallValues = []string{"DisplayName", "DisplayVersion", "Publisher", "InstallDate", "ParentKeyName", "SystemComponent"}

// programsCollector reports the programs installed for the machine from
// both registry views of the Uninstall key. Per-user installations (HKU)
// are not read. The root does not apply: the registry is the running
// system's.
type programsCollector struct{}

func (programsCollector) Name() string { return "programs" }

func (programsCollector) Collect(ctx context.Context, _ HostFS) ([]*commonv1.Item, error) {
	views := []struct {
		arch   string
		access uint32
	}{
		{nativeWindowsArch(), winreg.WOW64_64KEY},
		{"x86", winreg.WOW64_32KEY},
	}
	if runtime.GOARCH == "386" {
		views = views[1:] // a 32-bit agent reads only its own view
	}
	var entries []uninstallEntry
	for _, v := range views {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		es, err := readUninstallView(v.arch, v.access)
		if err != nil {
			return nil, err
		}
		entries = append(entries, es...)
	}
	return windowsPrograms(entries)
}

// nativeWindowsArch names the native registry view's architecture.
func nativeWindowsArch() string {
	switch runtime.GOARCH {
	case "arm64":
		return "arm64"
	case "386":
		return "x86"
	}
	return "x64"
}

// readUninstallView reads every entry of the Uninstall key in one view. An
// entry that vanishes or cannot be read meanwhile is skipped.
func readUninstallView(arch string, view uint32) ([]uninstallEntry, error) {
	k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, uninstallKey, winreg.ENUMERATE_SUB_KEYS|winreg.QUERY_VALUE|view)
	if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open HKLM\\%s (%s): %w", uninstallKey, arch, err)
	}
	defer k.Close()
	names, err := k.ReadSubKeyNames(-1)
	if err != nil {
		return nil, fmt.Errorf("list HKLM\\%s (%s): %w", uninstallKey, arch, err)
	}
	var out []uninstallEntry
	for _, name := range names {
		sk, err := winreg.OpenKey(k, name, winreg.QUERY_VALUE|view)
		if err != nil {
			continue
		}
		e := uninstallEntry{arch: arch, subkey: name, values: map[string]string{}}
		for _, v := range uninstallValues {
			if s, _, err := sk.GetStringValue(v); err == nil {
				e.values[v] = s
			} else if n, _, err := sk.GetIntegerValue(v); err == nil {
				e.values[v] = strconv.FormatUint(n, 10)
			}
		}
		sk.Close()
		out = append(out, e)
	}
	return out, nil
}
