// Package vuln matches the fleet's installed packages against OSV
// advisories: an in-memory index of records by (ecosystem, package name),
// matching with each distribution's own version ordering, and a fleet
// matcher that matches every distinct package set once and fans the
// findings out to the hosts that share it.
//
// Debian and Ubuntu advisories name source packages, so their matching
// goes through the dpkg Source field and compares the source version (a
// binNMU "+b1" or an epoch on the binary does not count); AlmaLinux
// advisories name binary packages; Red Hat and Rocky Linux ones may name
// either. See osv.PackageNaming.
package vuln

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/pkg/osv"
	"github.com/quantumlayer/qinfra/pkg/versioncmp"
)

// Index holds advisories ready for matching. It is safe for concurrent
// use; matching takes a read lock, so imports wait for running matches.
type Index struct {
	mu     sync.RWMutex
	byPkg  map[pkgKey][]*entry
	byID   map[string]*advisory
	hidden map[string]time.Time // withdrawn ids and their modified time
}

// pkgKey is what an affected package is filed under: the ecosystem's
// match key (osv.MatchKey) and the package name.
type pkgKey struct{ eco, name string }

// advisory is what an index keeps of a record, shared by its entries.
type advisory struct {
	id       string
	modified time.Time
	summary  string
	aliases  []string
	cves     []string
	keys     []pkgKey
}

// entry is one affected package of one advisory, compiled for matching.
type entry struct {
	adv      *advisory
	eco      string // the ecosystem as the record spells it
	pkgName  string
	cmp      versioncmp.Comparer
	ranges   []compiledRange
	versions map[string]struct{}
	severity osv.Assessment
}

// compiledRange is an ECOSYSTEM range with its events sorted by version,
// as the OSV evaluation algorithm reads them.
type compiledRange struct {
	events []osv.Event
	limits []string // limit events other than "*"
	// unlimited is set when an explicit limit "*" allows every version.
	unlimited bool
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		byPkg:  map[pkgKey][]*entry{},
		byID:   map[string]*advisory{},
		hidden: map[string]time.Time{},
	}
}

// Len returns the number of advisories the index matches with.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byID)
}

// Modified returns the modified time of the record with this id the index
// holds, withdrawn ones included, so that an Index is an osv.Stored and
// osv.Import(ctx, path, ix, ix.Add) re-imports only what changed.
func (ix *Index) Modified(id string) (time.Time, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if a, ok := ix.byID[id]; ok {
		return a.modified, true
	}
	t, ok := ix.hidden[id]
	return t, ok
}

// Add files rec under each of its affected packages, replacing an earlier
// record with the same id. A withdrawn record removes the earlier one and
// is not matched. A record older than the one held is ignored. Affected
// packages in ecosystems without a known version ordering, and ranges
// other than ECOSYSTEM, are left out: they cannot be evaluated against
// distribution packages. Add never fails; it returns an error so that it
// can be passed to osv.Import as is.
func (ix *Index) Add(rec *osv.Record) error {
	adv := &advisory{
		id:       rec.ID,
		modified: rec.Modified,
		summary:  rec.Summary,
		cves:     rec.CVEs(),
	}
	adv.aliases = append(adv.aliases, rec.Aliases...)
	for _, u := range rec.Upstream {
		if !slices.Contains(adv.aliases, u) {
			adv.aliases = append(adv.aliases, u)
		}
	}
	var entries []*entry
	if !rec.IsWithdrawn() {
		for i := range rec.Affected {
			if e := compile(adv, rec, &rec.Affected[i]); e != nil {
				entries = append(entries, e)
			}
		}
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	if prev, ok := ix.byID[rec.ID]; ok {
		if prev.modified.After(rec.Modified) {
			return nil
		}
		ix.removeLocked(prev)
	} else if t, ok := ix.hidden[rec.ID]; ok && t.After(rec.Modified) {
		return nil
	}
	delete(ix.hidden, rec.ID)
	if rec.IsWithdrawn() {
		ix.hidden[rec.ID] = rec.Modified
		return nil
	}
	for _, e := range entries {
		k := pkgKey{osv.MatchKey(e.eco), e.pkgName}
		if !slices.Contains(adv.keys, k) {
			adv.keys = append(adv.keys, k)
		}
		ix.byPkg[k] = append(ix.byPkg[k], e)
	}
	ix.byID[rec.ID] = adv
	return nil
}

// Remove drops the record with this id, if the index holds it.
func (ix *Index) Remove(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if a, ok := ix.byID[id]; ok {
		ix.removeLocked(a)
	}
	delete(ix.hidden, id)
}

func (ix *Index) removeLocked(a *advisory) {
	for _, k := range a.keys {
		list := slices.DeleteFunc(ix.byPkg[k], func(e *entry) bool { return e.adv == a })
		if len(list) == 0 {
			delete(ix.byPkg, k)
		} else {
			ix.byPkg[k] = list
		}
	}
	delete(ix.byID, a.id)
}

// compile prepares one affected package for matching, or returns nil when
// it cannot be matched.
func compile(adv *advisory, rec *osv.Record, a *osv.Affected) *entry {
	c, err := versioncmp.ForEcosystem(a.Package.Ecosystem)
	if err != nil {
		return nil
	}
	e := &entry{adv: adv, eco: a.Package.Ecosystem, pkgName: a.Package.Name, cmp: c, severity: rec.Assess(a)}
	for _, rg := range a.Ranges {
		if rg.Type != osv.RangeEcosystem {
			continue
		}
		cr := compiledRange{}
		for _, ev := range rg.Events {
			switch {
			case ev.Limit == "*":
				cr.unlimited = true
			case ev.Limit != "":
				cr.limits = append(cr.limits, ev.Limit)
			default:
				cr.events = append(cr.events, ev)
			}
		}
		slices.SortStableFunc(cr.events, func(x, y osv.Event) int { return compareEvents(c, x, y) })
		e.ranges = append(e.ranges, cr)
	}
	if len(a.Versions) > 0 {
		e.versions = make(map[string]struct{}, len(a.Versions))
		for _, v := range a.Versions {
			e.versions[v] = struct{}{}
		}
	}
	if len(e.ranges) == 0 && len(e.versions) == 0 {
		return nil
	}
	return e
}

func eventVersion(ev osv.Event) string {
	return cmp.Or(ev.Introduced, ev.Fixed, ev.LastAffected)
}

// compareEvents orders events by version, introduced "0" first.
func compareEvents(c versioncmp.Comparer, x, y osv.Event) int {
	x0, y0 := ev0(x), ev0(y)
	switch {
	case x0 && y0:
		return 0
	case x0:
		return -1
	case y0:
		return 1
	}
	return c.Compare(eventVersion(x), eventVersion(y))
}

func ev0(ev osv.Event) bool { return ev.Introduced == "0" }
