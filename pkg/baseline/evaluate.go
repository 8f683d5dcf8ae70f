package baseline

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/pkg/versioncmp"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Rules, the Rule of a Deviation: what was checked.
const (
	RulePackageExact     = "package.exact"
	RulePackageMinimum   = "package.minimum"
	RulePackageForbidden = "package.forbidden"
	RulePackagePresent   = "package.present"
	RuleFilePresent      = "file.present"
	RuleFileSha256       = "file.sha256"
	RuleFileMode         = "file.mode"
	RuleFileOwner        = "file.owner"
	RuleFileGroup        = "file.group"
	RuleUserAllowed      = "user.allowed"
	RuleUserForbidden    = "user.forbidden"
	RuleUserUID0         = "user.uid0"
	RuleUserEmptyPass    = "user.empty_password"
	RuleService          = "service.state"
)

// Deviation is one way a host differs from a baseline.
type Deviation struct {
	Baseline        string `json:"baseline"`
	BaselineVersion int    `json:"baseline_version"`
	// Type, Severity and Action come from the baseline's policy.
	Type     string `json:"drift_type"`
	Severity string `json:"severity"`
	Action   string `json:"action"`
	// Kind and Key name the subject: the inventory kind and the package
	// name (with ":arch" when the rule has one), file path, account name or
	// service name.
	Kind string `json:"kind"`
	Key  string `json:"key"`
	// Rule is what was checked, one of the Rule constants.
	Rule     string `json:"rule"`
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
}

// Identity is what makes two deviations of one host the same drift over
// time: baseline, rule and subject. Version, expected and actual values may
// change while the drift stays open.
func (d *Deviation) Identity() string {
	return d.Baseline + "\x00" + d.Rule + "\x00" + d.Kind + "\x00" + d.Key
}

// Absent is the Actual of a subject the host does not have.
const Absent = "absent"

// hostIndex is a host's items indexed the ways the rules look them up.
type hostIndex struct {
	pkgs     map[string]*commonv1.Package   // by name: the first seen
	morePkgs map[string][]*commonv1.Package // by name: others (multiarch)
	files    map[string]*commonv1.File      // by path
	users    []*commonv1.User
	services map[string]*commonv1.Service // by item key
}

func index(items []*commonv1.Item) *hostIndex {
	ix := &hostIndex{pkgs: make(map[string]*commonv1.Package, len(items)), files: make(map[string]*commonv1.File, 32), services: make(map[string]*commonv1.Service, 64)}
	for _, it := range items {
		switch it.GetKind() {
		case inventory.KindPackage:
			p := it.GetPackage()
			if p == nil || !installed(p) {
				continue
			}
			if _, dup := ix.pkgs[p.GetName()]; !dup {
				ix.pkgs[p.GetName()] = p
				continue
			}
			if ix.morePkgs == nil {
				ix.morePkgs = map[string][]*commonv1.Package{}
			}
			ix.morePkgs[p.GetName()] = append(ix.morePkgs[p.GetName()], p)
		case inventory.KindFile:
			if f := it.GetFile(); f != nil {
				ix.files[it.GetKey()] = f
			}
		case inventory.KindUser:
			if u := it.GetUser(); u != nil {
				ix.users = append(ix.users, u)
			}
		case inventory.KindService:
			if s := it.GetService(); s != nil {
				ix.services[it.GetKey()] = s
			}
		}
	}
	return ix
}

func installed(p *commonv1.Package) bool {
	switch p.GetStatus() {
	case "config-files", "not-installed":
		return false
	}
	return true
}

// Order sorts baselines by precedence: higher Priority first, then smaller
// Name.
func Order(bs []*Baseline) {
	slices.SortFunc(bs, func(a, b *Baseline) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Name, b.Name))
	})
}

// Evaluate compares a host's items with every baseline that applies to it
// and returns the deviations, ordered by baseline precedence then rule
// order. It is pure and costs one pass over items plus one lookup per rule.
//
// Precedence: every baseline applies, but each subject is governed by one
// baseline only, the first in Order (higher priority, then smaller name)
// that has a rule for it. Subjects are a package name with its arch ("" for
// any), a file path, a service name, and each of the four user rules
// (allowed set, forbidden accounts, UID 0 only root, no empty passwords).
// So a "base" baseline can require openssl >= 3.0 fleet-wide while a
// higher-priority "web" baseline pins it exactly on web hosts.
//
// c orders package versions; nil picks the ordering of each package's
// manager (dpkg, rpm, apk), which is what the host's own tools use.
func Evaluate(bs []*Baseline, items []*commonv1.Item, c versioncmp.Comparer) []Deviation {
	return EvaluateScope(bs, items, c, nil)
}

// EvaluateScope is Evaluate restricted to the subjects in scope (nil: all
// of them): it returns exactly the deviations of Evaluate that the scope
// contains, and needs of items only those scope.ItemPrefixes names.
func EvaluateScope(bs []*Baseline, items []*commonv1.Item, c versioncmp.Comparer, scope *Scope) []Deviation {
	if len(bs) == 0 || scope.IsEmpty() {
		return nil
	}
	bs = slices.Clone(bs)
	Order(bs)
	ix := index(items)
	// A subject: what, and up to two names.
	type subject struct {
		what byte
		a, b string
	}
	// One baseline claims everything: no need to remember.
	var claimed map[subject]bool
	if len(bs) > 1 {
		n := 4
		for _, b := range bs {
			n += len(b.Packages) + len(b.Files) + len(b.Services)
		}
		claimed = make(map[subject]bool, n)
	}
	claim := func(subject subject) bool {
		if claimed == nil {
			return true
		}
		if claimed[subject] {
			return false
		}
		claimed[subject] = true
		return true
	}
	users := ix.users
	if scope != nil && !scope.AllUsers {
		users = slices.DeleteFunc(slices.Clone(users), func(u *commonv1.User) bool { return !scope.Users[u.GetName()] })
		if len(users) == 0 {
			users = nil
		}
	}
	var out []Deviation
	for _, b := range bs {
		add := func(typ, kind, key, rule, expected, actual string) {
			p := b.PolicyFor(typ)
			out = append(out, Deviation{
				Baseline: b.Name, BaselineVersion: b.Version,
				Type: typ, Severity: p.Severity, Action: p.Action,
				Kind: kind, Key: key, Rule: rule, Expected: expected, Actual: actual,
			})
		}
		for i := range b.Packages {
			r := &b.Packages[i]
			if scope.Contains(inventory.KindPackage, r.subjectKey()) && claim(subject{'p', r.Name, r.Arch}) {
				evalPackage(r, ix, c, add)
			}
		}
		for i := range b.Files {
			r := &b.Files[i]
			if scope.Contains(inventory.KindFile, r.Path) && claim(subject{'f', r.Path, ""}) {
				evalFile(r, ix, add)
			}
		}
		if u := b.Users; u != nil && users != nil {
			if len(u.Allowed) > 0 && claim(subject{'u', "allowed", ""}) {
				for _, acct := range users {
					if !slices.Contains(u.Allowed, acct.GetName()) {
						add(TypeUsers, inventory.KindUser, acct.GetName(), RuleUserAllowed, "not in the allowed set", fmt.Sprintf("present (uid %d)", acct.GetUid()))
					}
				}
			}
			if len(u.Forbidden) > 0 && claim(subject{'u', "forbidden", ""}) {
				for _, acct := range users {
					if slices.Contains(u.Forbidden, acct.GetName()) {
						add(TypeUsers, inventory.KindUser, acct.GetName(), RuleUserForbidden, Absent, fmt.Sprintf("present (uid %d)", acct.GetUid()))
					}
				}
			}
			if u.UID0OnlyRoot && claim(subject{'u', "uid0", ""}) {
				for _, acct := range users {
					if acct.GetUid() == 0 && acct.GetName() != "root" {
						add(TypeUsers, inventory.KindUser, acct.GetName(), RuleUserUID0, "uid 0 only for root", "uid 0")
					}
				}
			}
			if u.NoEmptyPasswords && claim(subject{'u', "emptypass", ""}) {
				for _, acct := range users {
					if acct.GetPasswordState() == "empty" {
						add(TypeUsers, inventory.KindUser, acct.GetName(), RuleUserEmptyPass, "password set or locked", "empty password")
					}
				}
			}
		}
		for i := range b.Services {
			r := &b.Services[i]
			if scope.Contains(inventory.KindService, r.Name) && claim(subject{'s', serviceKey(r.Name), ""}) {
				evalService(r, ix, add)
			}
		}
	}
	return out
}

type addFunc func(typ, kind, key, rule, expected, actual string)

func comparerFor(manager string, c versioncmp.Comparer) versioncmp.Comparer {
	if c != nil {
		return c
	}
	switch manager {
	case "rpm":
		return versioncmp.RPM
	case "apk":
		return versioncmp.APK
	}
	return versioncmp.Dpkg
}

func evalPackage(r *PackageRule, ix *hostIndex, c versioncmp.Comparer, add addFunc) {
	var buf [4]*commonv1.Package
	found := buf[:0]
	if p := ix.pkgs[r.Name]; p != nil && (r.Arch == "" || p.GetArch() == r.Arch) {
		found = append(found, p)
	}
	for _, p := range ix.morePkgs[r.Name] {
		if r.Arch == "" || p.GetArch() == r.Arch {
			found = append(found, p)
		}
	}
	switch r.Constraint {
	case ConstraintForbidden:
		if len(found) > 0 {
			add(TypeVersion, inventory.KindPackage, r.subjectKey(), RulePackageForbidden, "not installed", "installed "+versions(found))
		}
	case ConstraintPresent:
		if len(found) == 0 {
			add(TypeVersion, inventory.KindPackage, r.subjectKey(), RulePackagePresent, "installed", "not installed")
		}
	case ConstraintExact, ConstraintMinimum:
		if len(found) == 0 {
			add(TypeVersion, inventory.KindPackage, r.subjectKey(), ruleOf(r), expectedOf(r), "not installed")
			return
		}
		for _, p := range found {
			d := comparerFor(p.GetManager(), c).Compare(p.GetVersion(), r.Version)
			if d != 0 && (r.Constraint == ConstraintExact || d < 0) {
				add(TypeVersion, inventory.KindPackage, r.subjectKey(), ruleOf(r), expectedOf(r), versions(found))
				return
			}
		}
	}
}

// subjectKey is the Key of the rule's deviations: name, or name:arch.
func (r *PackageRule) subjectKey() string {
	if r.Arch == "" {
		return r.Name
	}
	return r.Name + ":" + r.Arch
}

func ruleOf(r *PackageRule) string {
	if r.Constraint == ConstraintMinimum {
		return RulePackageMinimum
	}
	return RulePackageExact
}

func expectedOf(r *PackageRule) string {
	if r.Constraint == ConstraintMinimum {
		return ">= " + r.Version
	}
	return "= " + r.Version
}

func versions(found []*commonv1.Package) string {
	vs := make([]string, len(found))
	for i, p := range found {
		vs[i] = p.GetVersion()
	}
	return strings.Join(vs, ", ")
}

// evalFile checks a file rule. A file the host's inventory does not hold at
// all is not checked: the agent does not watch it (yet: the server sends
// agents their baselines' paths, and a baseline just applied is evaluated
// before the agent has rescanned; or the agent refuses them), so nothing
// is known of it, and reporting it absent would open drift that resolves
// a moment later on every host. Such rules are listed by Unverified. A
// watched file that does not exist is reported as type "missing": absent.
func evalFile(r *FileRule, ix *hostIndex, add addFunc) {
	f := ix.files[r.Path]
	if f == nil {
		return
	}
	if f.GetType() == "missing" {
		add(TypeConfiguration, inventory.KindFile, r.Path, RuleFilePresent, "present", Absent)
		return
	}
	if f.GetError() != "" {
		add(TypeConfiguration, inventory.KindFile, r.Path, RuleFilePresent, "readable", "unreadable: "+f.GetError())
		return
	}
	if r.Sha256 != "" && f.GetSha256() != r.Sha256 {
		actual := f.GetSha256()
		if actual == "" {
			actual = "no content hash (" + f.GetType() + ")"
		}
		add(TypeConfiguration, inventory.KindFile, r.Path, RuleFileSha256, r.Sha256, actual)
	}
	if r.Mode != "" {
		want, _ := ParseMode(r.Mode)
		if got := f.GetMode() & 0o7777; got != want {
			add(TypePermissions, inventory.KindFile, r.Path, RuleFileMode, FormatMode(want), FormatMode(got))
		}
	}
	if r.Owner != "" && f.GetOwner() != r.Owner {
		add(TypePermissions, inventory.KindFile, r.Path, RuleFileOwner, r.Owner, f.GetOwner())
	}
	if r.Group != "" && f.GetGroup() != r.Group {
		add(TypePermissions, inventory.KindFile, r.Path, RuleFileGroup, r.Group, f.GetGroup())
	}
}

// serviceKey is the inventory key of a service named in a rule: a systemd
// unit name without a suffix means the ".service" unit.
func serviceKey(name string) string {
	if strings.Contains(name, ".") {
		return name
	}
	return name + ".service"
}

func lookupService(ix *hostIndex, name string) *commonv1.Service {
	if s := ix.services[name]; s != nil {
		return s
	}
	return ix.services[serviceKey(name)]
}

func evalService(r *ServiceRule, ix *hostIndex, add addFunc) {
	s := lookupService(ix, r.Name)
	actual := Absent
	if s != nil {
		actual = s.GetUnitFileState()
		if r.State == ServiceRunning {
			actual = s.GetActiveState()
			if actual == "" {
				actual = "unknown"
			}
		}
	}
	ok := false
	switch r.State {
	case ServiceEnabled:
		ok = s != nil && strings.HasPrefix(s.GetUnitFileState(), "enabled")
	case ServiceDisabled:
		ok = s == nil || !strings.HasPrefix(s.GetUnitFileState(), "enabled")
	case ServiceMasked:
		ok = s != nil && strings.HasPrefix(s.GetUnitFileState(), "masked")
	case ServiceRunning:
		ok = s != nil && s.GetActiveState() == "active"
	case ServiceAbsent:
		ok = s == nil
	}
	if !ok {
		add(TypeServices, inventory.KindService, r.Name, RuleService, r.State, actual)
	}
}

// UnverifiedRule is a file rule a host's inventory cannot answer: the
// agent does not report the file at all.
type UnverifiedRule struct {
	Baseline string `json:"baseline"`
	Path     string `json:"path"`
}

// Unverified lists the file rules of bs (the baselines matching a host)
// whose file the host's items do not hold, each path once, under the
// baseline that governs it (see Evaluate), in path order.
func Unverified(bs []*Baseline, items []*commonv1.Item) []UnverifiedRule {
	reported := map[string]bool{}
	for _, it := range items {
		if it.GetKind() == inventory.KindFile {
			reported[it.GetKey()] = true
		}
	}
	bs = slices.Clone(bs)
	Order(bs)
	seen := map[string]bool{}
	var out []UnverifiedRule
	for _, b := range bs {
		for _, r := range b.Files {
			if !seen[r.Path] && !reported[r.Path] {
				out = append(out, UnverifiedRule{Baseline: b.Name, Path: r.Path})
			}
			seen[r.Path] = true
		}
	}
	slices.SortFunc(out, func(a, b UnverifiedRule) int { return cmp.Compare(a.Path, b.Path) })
	return out
}
