package baseline

import (
	"slices"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Kinds a baseline can capture.
var CaptureKinds = []string{inventory.KindPackage, inventory.KindFile, inventory.KindUser, inventory.KindService}

// CaptureOptions says what Capture takes from the reference host.
type CaptureOptions struct {
	// Name of the new baseline; required.
	Name string
	// Kinds to capture, a subset of CaptureKinds; empty means all.
	Kinds []string
	// MinimumVersions turns each installed version into a minimum rather
	// than an exact version, so hosts may run newer patches.
	MinimumVersions bool
	// Selector, Description, Priority and Image are copied into the
	// baseline.
	Selector    map[string]string
	Description string
	Priority    int
	Image       string
	// HostID is recorded as Metadata.CapturedFrom.
	HostID string
}

// Capture builds a baseline describing a reference host's items, so that
// Evaluate of the result against the same items finds no deviation:
//
//   - every installed package, exact version (or minimum, see options),
//     with its arch;
//   - every regular file reported with its sha256, mode, owner and group
//     (directories and links: mode, owner and group);
//   - users: the present accounts as the allowed set, and UID 0 only root
//     and no empty passwords where the host already satisfies them;
//   - services: enabled, disabled or masked as their unit files are.
//
// The result is not validated: the caller's Name may be invalid.
func Capture(items []*commonv1.Item, opts CaptureOptions) *Baseline {
	kinds := opts.Kinds
	if len(kinds) == 0 {
		kinds = CaptureKinds
	}
	b := &Baseline{
		Name: opts.Name, Description: opts.Description, Priority: opts.Priority,
		Selector: opts.Selector,
		Metadata: Metadata{Image: opts.Image, CapturedFrom: opts.HostID},
	}
	want := func(kind string) bool { return slices.Contains(kinds, kind) }
	var users []*commonv1.User
	seenPkg := map[string]bool{}
	for _, it := range items {
		switch it.GetKind() {
		case inventory.KindOS:
			if f := it.GetOs(); f != nil {
				b.Metadata.OS, b.Metadata.Platform, b.Metadata.PlatformVersion = f.GetPrettyName(), f.GetPlatform(), f.GetPlatformVersion()
			}
		case inventory.KindPackage:
			p := it.GetPackage()
			if !want(inventory.KindPackage) || p == nil || !installed(p) {
				continue
			}
			c := ConstraintExact
			if opts.MinimumVersions {
				c = ConstraintMinimum
			}
			subj := p.GetName() + ":" + p.GetArch()
			if seenPkg[subj] {
				continue // two managers with one name and arch: keep the first
			}
			seenPkg[subj] = true
			b.Packages = append(b.Packages, PackageRule{Name: p.GetName(), Arch: p.GetArch(), Constraint: c, Version: p.GetVersion()})
		case inventory.KindFile:
			f := it.GetFile()
			if !want(inventory.KindFile) || f == nil || f.GetError() != "" || !strings.HasPrefix(it.GetKey(), "/") {
				continue
			}
			r := FileRule{Path: it.GetKey(), Mode: FormatMode(f.GetMode()), Owner: f.GetOwner(), Group: f.GetGroup()}
			if f.GetType() == "file" {
				r.Sha256 = f.GetSha256()
			}
			b.Files = append(b.Files, r)
		case inventory.KindUser:
			if u := it.GetUser(); want(inventory.KindUser) && u != nil {
				users = append(users, u)
			}
		case inventory.KindService:
			s := it.GetService()
			if !want(inventory.KindService) || s == nil {
				continue
			}
			var state string
			switch st := s.GetUnitFileState(); {
			case strings.HasPrefix(st, "enabled"):
				state = ServiceEnabled
			case strings.HasPrefix(st, "masked"):
				state = ServiceMasked
			case st == "disabled":
				state = ServiceDisabled
			default:
				continue // static, alias, generated...: nothing to hold
			}
			b.Services = append(b.Services, ServiceRule{Name: it.GetKey(), State: state})
		}
	}
	if want(inventory.KindUser) && len(users) > 0 {
		r := &UserRules{UID0OnlyRoot: true, NoEmptyPasswords: true}
		for _, u := range users {
			r.Allowed = append(r.Allowed, u.GetName())
			if u.GetUid() == 0 && u.GetName() != "root" {
				r.UID0OnlyRoot = false
			}
			if u.GetPasswordState() == "empty" {
				r.NoEmptyPasswords = false
			}
		}
		slices.Sort(r.Allowed)
		b.Users = r
	}
	return b
}
