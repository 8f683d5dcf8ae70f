package collect

// The Windows collectors read the registry, the service control manager and
// the local account database in *_windows.go files; what they read is turned
// into items here, in code that builds and is tested everywhere.

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// uninstallEntry is one subkey of an Uninstall registry key: the programs
// "Apps & features" lists.
type uninstallEntry struct {
	// arch is the registry view's architecture: the native one ("x64",
	// "arm64") or "x86" for WOW6432Node.
	arch string
	// subkey is the entry's key name, often the product code.
	subkey string
	// values are its string values, and its DWORD values in decimal.
	values map[string]string
}

// windowsPrograms turns Uninstall entries of every view into packages keyed
// "windows:<name>:<arch>", as "Apps & features" lists them: entries without
// a DisplayName, system components (SystemComponent=1) and updates of
// another entry (ParentKeyName) are left out. An entry seen in several
// views (a key shared between them) counts once, in the first view. Several
// versions of one name and architecture get their version appended to the
// key, as rpm packages installed side by side do.
func windowsPrograms(entries []uninstallEntry) ([]*commonv1.Item, error) {
	type seen struct{ subkey, name, version string }
	first := map[seen]bool{}
	var pkgs []*commonv1.Package
	for _, e := range entries {
		name := strings.TrimSpace(e.values["DisplayName"])
		if name == "" || strings.TrimSpace(e.values["SystemComponent"]) == "1" || e.values["ParentKeyName"] != "" {
			continue
		}
		version := strings.TrimSpace(e.values["DisplayVersion"])
		s := seen{strings.ToLower(e.subkey), name, version}
		if first[s] {
			continue
		}
		first[s] = true
		pkgs = append(pkgs, &commonv1.Package{
			Manager:         "windows",
			Name:            name,
			Version:         version,
			Arch:            e.arch,
			SourceName:      name,
			SourceVersion:   version,
			Status:          "installed",
			UpstreamVersion: version,
			Vendor:          strings.TrimSpace(e.values["Publisher"]),
			InstallTime:     parseInstallDate(e.values["InstallDate"]),
		})
	}
	// The same name, architecture and version from two subkeys (an MSI and
	// its bootstrapper) is one program.
	slices.SortStableFunc(pkgs, func(a, b *commonv1.Package) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Arch, b.Arch), strings.Compare(a.Version, b.Version))
	})
	pkgs = slices.CompactFunc(pkgs, func(a, b *commonv1.Package) bool {
		return a.Name == b.Name && a.Arch == b.Arch && a.Version == b.Version
	})
	count := map[string]int{}
	for _, p := range pkgs {
		count[p.Name+"\x00"+p.Arch]++
	}
	items := make([]*commonv1.Item, 0, len(pkgs))
	for _, p := range pkgs {
		k := "windows:" + p.Name + ":" + p.Arch
		if count[p.Name+"\x00"+p.Arch] > 1 {
			k += ":" + p.Version
		}
		it, err := sealed(inventory.KindPackage, k, p)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// parseInstallDate parses an Uninstall entry's InstallDate, by convention
// "YYYYMMDD", into seconds since the epoch at midnight UTC; installers
// writing other forms are read where unambiguous, else 0.
func parseInstallDate(s string) int64 {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"20060102", "2006-01-02", "2006/01/02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Unix()
		}
	}
	return 0
}

// winService is what the service control manager tells of a service.
type winService struct {
	name, displayName, binaryPath string
	serviceType, startType, state uint32
	delayedAutoStart              bool
}

// Service types, start types and states, from winsvc.h.
const (
	winServiceUserServiceInstance = 0x80

	winStartBoot     = 0
	winStartSystem   = 1
	winStartAuto     = 2
	winStartDemand   = 3
	winStartDisabled = 4
)

var winServiceStates = map[uint32]string{
	1: "stopped", 2: "start-pending", 3: "stop-pending", 4: "running",
	5: "continue-pending", 6: "pause-pending", 7: "paused",
}

// windowsServices turns services into items keyed by service name, with the
// start type as the unit file state ("auto", "auto-delayed", "demand",
// "disabled", "boot", "system") and the state as the active state. Per-user
// instances of user services ("CDPUserSvc_3a8b1"), created and named anew
// for each logon, are left out: their template is reported.
func windowsServices(svcs []winService) ([]*commonv1.Item, error) {
	slices.SortStableFunc(svcs, func(a, b winService) int { return strings.Compare(strings.ToLower(a.name), strings.ToLower(b.name)) })
	items := make([]*commonv1.Item, 0, len(svcs))
	for i, s := range svcs {
		if s.serviceType&winServiceUserServiceInstance != 0 || s.name == "" {
			continue
		}
		// Service names are case-insensitive: the first of a name wins.
		if i > 0 && strings.EqualFold(svcs[i-1].name, s.name) {
			continue
		}
		start := map[uint32]string{winStartBoot: "boot", winStartSystem: "system", winStartAuto: "auto", winStartDemand: "demand", winStartDisabled: "disabled"}[s.startType]
		if start == "" {
			start = "unknown"
		}
		if s.startType == winStartAuto && s.delayedAutoStart {
			start = "auto-delayed"
		}
		state := winServiceStates[s.state]
		if state == "" {
			state = "unknown"
		}
		it, err := sealed(inventory.KindService, s.name, &commonv1.Service{
			Manager:       "windows",
			Name:          s.name,
			UnitFileState: start,
			Path:          s.binaryPath,
			ActiveState:   state,
			Description:   s.displayName,
		})
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// winUser is a local account as NetUserEnum (level 3) describes it.
type winUser struct {
	name, fullName, homeDir string
	rid, primaryGroupRID    uint32
	flags                   uint32
}

// Account flags, from lmaccess.h.
const (
	winUFAccountDisable = 0x0002
	winUFLockout        = 0x0010
	winUFPasswdNotReqd  = 0x0020
)

// windowsUsers turns local accounts into user items keyed by name, with the
// relative id as uid ("Administrator" 500) and the primary group's as gid.
// The password state is "locked" for a disabled or locked-out account,
// "empty" where the account may have no password (PASSWD_NOTREQD), and
// "set" otherwise; no password data is ever read.
func windowsUsers(users []winUser) ([]*commonv1.Item, error) {
	items := make([]*commonv1.Item, 0, len(users))
	seen := map[string]bool{}
	for _, u := range users {
		if u.name == "" || seen[strings.ToLower(u.name)] {
			continue
		}
		seen[strings.ToLower(u.name)] = true
		state := "set"
		switch {
		case u.flags&(winUFAccountDisable|winUFLockout) != 0:
			state = "locked"
		case u.flags&winUFPasswdNotReqd != 0:
			state = "empty"
		}
		it, err := sealed(inventory.KindUser, u.name, &commonv1.User{
			Name:          u.name,
			Uid:           u.rid,
			Gid:           u.primaryGroupRID,
			Gecos:         u.fullName,
			Home:          u.homeDir,
			PasswordState: state,
		})
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}
