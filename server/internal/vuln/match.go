package vuln

import (
	"cmp"
	"slices"

	"github.com/quantumlayer/qinfra/pkg/osv"
	"github.com/quantumlayer/qinfra/pkg/versioncmp"
)

// Package is one installed package, as the inventory reports it. Pass
// installed packages only (not dpkg's "config-files" leftovers).
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// SourceName and SourceVersion name the source package: dpkg's Source
	// field (whose version, when the field gives none, is the binary's),
	// the rpm SOURCERPM, the apk origin. Empty means the binary's own.
	SourceName    string `json:"source_name,omitempty"`
	SourceVersion string `json:"source_version,omitempty"`
	Arch          string `json:"arch,omitempty"`
}

// A Finding is one advisory that applies to one installed package.
type Finding struct {
	// Host is set by FleetMatch's accessors; Match leaves it empty.
	Host string `json:"host,omitempty"`
	// Ecosystem is the advisory's, e.g. "Red Hat:enterprise_linux:9::baseos".
	Ecosystem        string `json:"ecosystem"`
	Package          string `json:"package"`
	Arch             string `json:"arch,omitempty"`
	InstalledVersion string `json:"installed_version"`
	// SourcePackage and SourceVersion are the name the advisory matched
	// and the version compared with it, when they are not Package and
	// InstalledVersion (Debian and Ubuntu advisories name the source).
	SourcePackage string `json:"source_package,omitempty"`
	SourceVersion string `json:"source_version,omitempty"`
	// FixedVersion is the lowest fixed version above the compared one; it
	// is empty, and FixAvailable false, when no fix is published.
	FixedVersion string         `json:"fixed_version,omitempty"`
	FixAvailable bool           `json:"fix_available"`
	AdvisoryID   string         `json:"advisory_id"`
	Aliases      []string       `json:"aliases,omitempty"`
	CVEs         []string       `json:"cves,omitempty"`
	Summary      string         `json:"summary,omitempty"`
	Severity     osv.Assessment `json:"severity"`
}

// query is one lookup: an ecosystem's match key, the package names its
// advisories may use and the version to compare.
type query struct {
	eco     string
	name    string
	altName string // a second name to look up (EitherNames), or ""
	version string
}

// hit is an advisory entry that applies, with the fix to report.
type hit struct {
	e     *entry
	fixed string
}

// queryFor returns the lookup for p on a host of the ecosystem whose
// match key is key.
func queryFor(key string, naming osv.Naming, p *Package) query {
	switch naming {
	case osv.SourceNames:
		return query{eco: key, name: cmp.Or(p.SourceName, p.Name), version: cmp.Or(p.SourceVersion, p.Version)}
	case osv.EitherNames:
		q := query{eco: key, name: p.Name, version: p.Version}
		if p.SourceName != "" && p.SourceName != p.Name {
			q.altName = p.SourceName
		}
		return q
	}
	return query{eco: key, name: p.Name, version: p.Version}
}

// Match returns the findings for one host's packages: eco is the host's
// ecosystem (osv.HostEcosystem). An ecosystem without a known version
// ordering has no findings. Findings are sorted by package, arch and
// advisory id.
func (ix *Index) Match(eco string, pkgs []Package) []Finding {
	key := osv.MatchKey(eco)
	if _, err := versioncmp.ForEcosystem(key); err != nil {
		return nil
	}
	naming := osv.PackageNaming(key)
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []Finding
	for i := range pkgs {
		p := &pkgs[i]
		q := queryFor(key, naming, p)
		out = appendFindings(out, p, q, ix.lookupLocked(q, nil))
	}
	sortFindings(out)
	return out
}

// lookupLocked returns the advisories that apply to q, one hit per
// advisory, appended to buf. The caller holds ix.mu.
func (ix *Index) lookupLocked(q query, buf []hit) []hit {
	start := len(buf)
	add := func(name string) {
		for _, e := range ix.byPkg[pkgKey{q.eco, name}] {
			ok, fixed := e.affects(q.version)
			if !ok {
				continue
			}
			// One advisory may list the package more than once (Red Hat's
			// AppStream and BaseOS, a binary and its source): keep one,
			// preferring one that names a fix.
			dup := slices.IndexFunc(buf[start:], func(h hit) bool { return h.e.adv == e.adv })
			switch {
			case dup < 0:
				buf = append(buf, hit{e, fixed})
			case buf[start+dup].fixed == "" && fixed != "":
				buf[start+dup] = hit{e, fixed}
			}
		}
	}
	add(q.name)
	if q.altName != "" {
		add(q.altName)
	}
	slices.SortFunc(buf[start:], func(a, b hit) int { return cmp.Compare(a.e.adv.id, b.e.adv.id) })
	return buf
}

func appendFindings(out []Finding, p *Package, q query, hits []hit) []Finding {
	for _, h := range hits {
		out = append(out, finding(p, q, h))
	}
	return out
}

func finding(p *Package, q query, h hit) Finding {
	f := Finding{
		Ecosystem:        h.e.eco,
		Package:          p.Name,
		Arch:             p.Arch,
		InstalledVersion: p.Version,
		FixedVersion:     h.fixed,
		FixAvailable:     h.fixed != "",
		AdvisoryID:       h.e.adv.id,
		Aliases:          h.e.adv.aliases,
		CVEs:             h.e.adv.cves,
		Summary:          h.e.adv.summary,
		Severity:         h.e.severity,
	}
	if h.e.pkgName != p.Name {
		f.SourcePackage = h.e.pkgName
	}
	if q.version != p.Version {
		f.SourceVersion = q.version
	}
	return f
}

// sortFindings orders findings by package, arch, installed version and
// advisory id.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Package, b.Package), cmp.Compare(a.Arch, b.Arch),
			cmp.Compare(a.InstalledVersion, b.InstalledVersion), cmp.Compare(a.AdvisoryID, b.AdvisoryID))
	})
}

// comparePackages orders packages as sortFindings orders their findings.
func comparePackages(a, b *Package) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Arch, b.Arch), cmp.Compare(a.Version, b.Version))
}

// affects reports whether version v is affected, by a range or by the
// explicit list, and the lowest fixed version above v in any range.
func (e *entry) affects(v string) (bool, string) {
	_, listed := e.versions[v]
	hit := listed
	for i := 0; !hit && i < len(e.ranges); i++ {
		hit = e.ranges[i].includes(e.cmp, v)
	}
	if !hit {
		return false, ""
	}
	fixed := ""
	for _, r := range e.ranges {
		for _, ev := range r.events {
			if ev.Fixed != "" && e.cmp.Compare(ev.Fixed, v) > 0 && (fixed == "" || e.cmp.Compare(ev.Fixed, fixed) < 0) {
				fixed = ev.Fixed
			}
		}
	}
	return true, fixed
}

// includes is the OSV schema's evaluation of one range (BeforeLimits and
// the walk over the sorted events). The walk stops at the first event
// above v: later ones cannot change the answer.
func (r *compiledRange) includes(c versioncmp.Comparer, v string) bool {
	if len(r.limits) > 0 && !r.unlimited {
		below := false
		for _, l := range r.limits {
			if c.Compare(v, l) < 0 {
				below = true
				break
			}
		}
		if !below {
			return false
		}
	}
	vulnerable := false
	for _, ev := range r.events {
		if ev.Introduced == "0" {
			vulnerable = true
			continue
		}
		d := c.Compare(v, eventVersion(ev))
		if d < 0 {
			break
		}
		switch {
		case ev.Introduced != "":
			vulnerable = true
		case ev.Fixed != "":
			vulnerable = false
		case ev.LastAffected != "" && d > 0:
			vulnerable = false
		}
	}
	return vulnerable
}
