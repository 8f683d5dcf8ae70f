package baseline

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

// Scope is a set of subjects: the part of a host's drift a partial
// re-check recomputes. Incremental drift rests on one rule: a rule is
// evaluated (EvaluateScope) exactly when the deviations it can produce are
// in the scope (Contains), so the deviations of a scoped evaluation replace
// exactly the open drift the scope contains, and everything outside it
// stays as the last evaluation left it.
//
// Subjects are named as deviations name them: a package by its name, a
// file by its path, a service by its name (with and without the systemd
// ".service" suffix, which name one unit), an account by its name.
type Scope struct {
	// Packages holds package names; a deviation keyed "name:arch" is in
	// the scope when its name is.
	Packages map[string]bool
	Files    map[string]bool
	Services map[string]bool
	Users    map[string]bool
	// AllUsers puts every account in the scope.
	AllUsers bool
}

// IsEmpty reports whether the scope contains nothing.
func (s *Scope) IsEmpty() bool {
	return s != nil && len(s.Packages) == 0 && len(s.Files) == 0 && len(s.Services) == 0 && len(s.Users) == 0 && !s.AllUsers
}

// AddPackage puts the package name in the scope.
func (s *Scope) AddPackage(name string) { s.Packages = add(s.Packages, name) }

// AddFile puts the path in the scope.
func (s *Scope) AddFile(path string) { s.Files = add(s.Files, path) }

// AddService puts the service in the scope under both of its names.
func (s *Scope) AddService(name string) {
	s.Services = add(s.Services, name)
	s.Services[serviceKey(name)] = true
}

// AddUser puts the account in the scope.
func (s *Scope) AddUser(name string) { s.Users = add(s.Users, name) }

func add(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[k] = true
	return m
}

// Union adds everything of o to s.
func (s *Scope) Union(o *Scope) {
	for k := range o.Packages {
		s.AddPackage(k)
	}
	for k := range o.Files {
		s.AddFile(k)
	}
	for k := range o.Services {
		s.AddService(k)
	}
	for k := range o.Users {
		s.AddUser(k)
	}
	s.AllUsers = s.AllUsers || o.AllUsers
}

// Contains reports whether a deviation of the given kind and key (see
// Deviation) is in the scope. A nil scope contains everything.
//
// A package deviation's key is the rule's name, or "name:arch"; a name may
// itself hold colons (Windows programs), so every colon-separated prefix of
// the key is tried. That can take in a rule for "Foo: Bar" when "Foo" is
// in the scope; it is harmless because EvaluateScope decides with the same
// test, so such a rule is then re-evaluated too.
func (s *Scope) Contains(kind, key string) bool {
	if s == nil {
		return true
	}
	switch kind {
	case inventory.KindPackage:
		if s.Packages[key] {
			return true
		}
		for i := strings.IndexByte(key, ':'); i >= 0; {
			if s.Packages[key[:i]] {
				return true
			}
			j := strings.IndexByte(key[i+1:], ':')
			if j < 0 {
				break
			}
			i += 1 + j
		}
		return false
	case inventory.KindFile:
		return s.Files[key]
	case inventory.KindService:
		return s.Services[key] || s.Services[serviceKey(key)]
	case inventory.KindUser:
		return s.AllUsers || s.Users[key]
	}
	return false
}

// ContainsIdentity is Contains for a Deviation.Identity.
func (s *Scope) ContainsIdentity(identity string) bool {
	if s == nil {
		return true
	}
	// baseline, rule, kind, key: skip two fields without allocating, as
	// the store asks this of every open drift of every host it replaces.
	rest := identity
	for range 2 {
		i := strings.IndexByte(rest, 0)
		if i < 0 {
			return false
		}
		rest = rest[i+1:]
	}
	kind, key, ok := strings.Cut(rest, "\x00")
	if !ok {
		return false
	}
	return s.Contains(kind, key)
}

// ScopeOfRefs is the scope an inventory change of these items can affect.
// Refs of kinds no rule checks are ignored. A package is keyed
// "manager:name:arch" (inventory.Validate holds agents to that, with
// optional further ":"-separated parts), so its name is one of the
// colon-separated prefixes after the manager; all are taken, which costs
// nothing when no rule has such a name.
func ScopeOfRefs(refs []inventory.Ref) *Scope {
	s := &Scope{}
	for _, r := range refs {
		switch r.Kind {
		case inventory.KindPackage:
			_, rest, ok := strings.Cut(r.Key, ":")
			if !ok {
				continue
			}
			for i := strings.IndexByte(rest, ':'); i >= 0; {
				s.AddPackage(rest[:i])
				j := strings.IndexByte(rest[i+1:], ':')
				if j < 0 {
					break
				}
				i += 1 + j
			}
			s.AddPackage(rest)
		case inventory.KindFile:
			s.AddFile(r.Key)
		case inventory.KindService:
			s.AddService(r.Key)
		case inventory.KindUser:
			s.AddUser(r.Key)
		}
	}
	return s
}

// ScopeOf is every subject b has a rule for.
func ScopeOf(b *Baseline) *Scope {
	s := &Scope{}
	for _, r := range b.Packages {
		s.AddPackage(r.Name)
	}
	for _, r := range b.Files {
		s.AddFile(r.Path)
	}
	for _, r := range b.Services {
		s.AddService(r.Name)
	}
	s.AllUsers = b.Users != nil
	return s
}

// ScopeOfChange is what a change from old to updated (either nil for a
// created or deleted baseline) can change on the hosts either selects:
// every subject of both when the selector, priority or policy changed
// (those affect every deviation of the baseline, or which baseline claims
// a subject), else only the subjects whose rules changed. Metadata and
// description changes have an empty scope.
func ScopeOfChange(old, updated *Baseline) *Scope {
	switch {
	case old == nil && updated == nil:
		return &Scope{}
	case old == nil:
		return ScopeOf(updated)
	case updated == nil:
		return ScopeOf(old)
	}
	if !maps.Equal(old.Selector, updated.Selector) || old.Priority != updated.Priority || !maps.Equal(old.Policy, updated.Policy) {
		s := ScopeOf(old)
		s.Union(ScopeOf(updated))
		return s
	}
	s := &Scope{}
	changedKeys(old.Packages, updated.Packages, func(r PackageRule) string { return r.subjectKey() }, func(r PackageRule) { s.AddPackage(r.Name) })
	changedKeys(old.Files, updated.Files, func(r FileRule) string { return r.Path }, func(r FileRule) { s.AddFile(r.Path) })
	changedKeys(old.Services, updated.Services, func(r ServiceRule) string { return serviceKey(r.Name) }, func(r ServiceRule) { s.AddService(r.Name) })
	if !reflect.DeepEqual(old.Users, updated.Users) {
		s.AllUsers = true
	}
	return s
}

// changedKeys calls changed for every rule of a or b whose subject's rules
// are not the same in both.
func changedKeys[R any](a, b []R, key func(R) string, changed func(R)) {
	group := func(rs []R) map[string][]R {
		m := make(map[string][]R, len(rs))
		for _, r := range rs {
			m[key(r)] = append(m[key(r)], r)
		}
		return m
	}
	ga, gb := group(a), group(b)
	for k, ra := range ga {
		if rb, ok := gb[k]; !ok || !reflect.DeepEqual(ra, rb) {
			for _, r := range ra {
				changed(r)
			}
			for _, r := range rb {
				changed(r)
			}
		}
	}
	for k, rb := range gb {
		if _, ok := ga[k]; !ok {
			for _, r := range rb {
				changed(r)
			}
		}
	}
}

// Touches reports whether any rule of bs is in the scope, i.e. whether a
// scoped re-check against bs can produce a deviation.
func (s *Scope) Touches(bs []*Baseline) bool {
	for _, b := range bs {
		for i := range b.Packages {
			if s.Contains(inventory.KindPackage, b.Packages[i].subjectKey()) {
				return true
			}
		}
		for i := range b.Files {
			if s.Contains(inventory.KindFile, b.Files[i].Path) {
				return true
			}
		}
		for i := range b.Services {
			if s.Contains(inventory.KindService, b.Services[i].Name) {
				return true
			}
		}
		if b.Users != nil && (s == nil || s.AllUsers || len(s.Users) > 0) {
			return true
		}
	}
	return false
}

// ItemPrefixes lists the items a scoped evaluation of bs needs, as
// (kind, key prefix) pairs: the packages, files and services of the rules
// in the scope, every account when a user rule is, and the OS facts (which
// pick the version ordering). It returns nil, meaning every item, for a
// nil scope or when the list would be longer than limit.
func (s *Scope) ItemPrefixes(bs []*Baseline, limit int) []inventory.Ref {
	if s == nil {
		return nil
	}
	seen := map[inventory.Ref]bool{}
	out := []inventory.Ref{{Kind: inventory.KindOS}}
	put := func(r inventory.Ref) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	users := false
	for _, b := range bs {
		for i := range b.Packages {
			r := &b.Packages[i]
			if s.Contains(inventory.KindPackage, r.subjectKey()) {
				for _, m := range inventory.PackageManagers {
					put(inventory.Ref{Kind: inventory.KindPackage, Key: m + ":" + r.Name + ":"})
				}
			}
		}
		for i := range b.Files {
			if p := b.Files[i].Path; s.Contains(inventory.KindFile, p) {
				put(inventory.Ref{Kind: inventory.KindFile, Key: p})
			}
		}
		for i := range b.Services {
			if n := b.Services[i].Name; s.Contains(inventory.KindService, n) {
				put(inventory.Ref{Kind: inventory.KindService, Key: n})
				put(inventory.Ref{Kind: inventory.KindService, Key: serviceKey(n)})
			}
		}
		if b.Users != nil && (s.AllUsers || len(s.Users) > 0) {
			users = true
		}
		if len(out) > limit {
			return nil
		}
	}
	if users {
		put(inventory.Ref{Kind: inventory.KindUser})
	}
	slices.SortFunc(out, func(a, b inventory.Ref) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}
