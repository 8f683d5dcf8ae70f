package vuln

import (
	"context"
	"hash/maphash"
	"iter"
	"runtime"
	"slices"
	"sync"

	"github.com/quantumlayer/qinfra/pkg/osv"
	"github.com/quantumlayer/qinfra/pkg/versioncmp"
)

// HostPackages is one host's installed packages.
type HostPackages struct {
	Host string
	// Ecosystem is the host's OSV ecosystem (osv.HostEcosystem).
	Ecosystem string
	// SetID identifies the package set, such as the store's content hash
	// of it: hosts with the same Ecosystem and SetID are matched once. When
	// empty, MatchSets derives one from Packages (hosts whose Packages are
	// the same slice are recognised without reading it).
	SetID    string
	Packages []Package
}

// SetMatch is the result for one distinct package set. Its findings are
// kept as references, into the index and into the Packages slice of the
// set's first host, and built when asked for, so a fleet's result costs
// memory per set, not per finding.
type SetMatch struct {
	Ecosystem string
	SetID     string
	Hosts     []string

	fleet *FleetMatch
	pkgs  []Package
	qs    []int32 // the lookup of each package
	order []int32 // the packages with findings, in finding order
	n     int     // findings
}

// Len returns the number of findings of the set (of each of its hosts).
func (s *SetMatch) Len() int { return s.n }

// Findings returns the set's findings, sorted by package, arch, version
// and advisory id, with Host empty.
func (s *SetMatch) Findings() []Finding {
	out := make([]Finding, 0, s.n)
	for f := range s.all("") {
		out = append(out, f)
	}
	return out
}

// all yields the set's findings with Host set to host.
func (s *SetMatch) all(host string) iter.Seq[Finding] {
	return func(yield func(Finding) bool) {
		for _, pi := range s.order {
			q := s.qs[pi]
			for _, h := range s.fleet.hits[q] {
				f := finding(&s.pkgs[pi], s.fleet.queries[q], h)
				f.Host = host
				if !yield(f) {
					return
				}
			}
		}
	}
}

// FleetMatch is the result of MatchSets.
type FleetMatch struct {
	Sets    []*SetMatch
	byHost  map[string]*SetMatch
	queries []query
	hits    [][]hit
}

// Host returns the findings of one host, with Host set.
func (m *FleetMatch) Host(id string) []Finding {
	s, ok := m.byHost[id]
	if !ok {
		return nil
	}
	out := make([]Finding, 0, s.n)
	for f := range s.all(id) {
		out = append(out, f)
	}
	return out
}

// All yields every host's findings with Host set, set by set, building
// each as it goes.
func (m *FleetMatch) All() iter.Seq[Finding] {
	return func(yield func(Finding) bool) {
		for _, s := range m.Sets {
			for _, h := range s.Hosts {
				for f := range s.all(h) {
					if !yield(f) {
						return
					}
				}
			}
		}
	}
}

// Count returns the number of findings over all hosts.
func (m *FleetMatch) Count() int {
	n := 0
	for _, s := range m.Sets {
		n += len(s.Hosts) * s.n
	}
	return n
}

// setKey identifies a distinct package set.
type setKey struct{ eco, id string }

// MatchSets matches a fleet: hosts are grouped by (ecosystem, package
// set), every distinct (ecosystem, package name, version) of all sets is
// looked up once, and each set's findings are assembled once and shared
// by the hosts in it. The work is spread over GOMAXPROCS goroutines.
// A host listed twice keeps its last entry. The result refers to the
// Packages slices passed in: they must not change while it is used. Adding
// to the index meanwhile is safe; the result keeps what it matched.
func (ix *Index) MatchSets(ctx context.Context, hosts []HostPackages) (*FleetMatch, error) {
	m := &FleetMatch{byHost: make(map[string]*SetMatch, len(hosts))}
	sets := map[setKey]*SetMatch{}
	hasher := newSetHasher()
	for i := range hosts {
		h := &hosts[i]
		k := setKey{eco: osv.NormalizeEcosystem(h.Ecosystem), id: h.SetID}
		if k.id == "" {
			k.id = hasher.id(h.Packages)
		} else {
			k.id = "id:" + k.id
		}
		s, ok := sets[k]
		if !ok {
			s = &SetMatch{Ecosystem: k.eco, SetID: h.SetID, fleet: m, pkgs: h.Packages}
			sets[k] = s
			m.Sets = append(m.Sets, s)
		}
		if prev, dup := m.byHost[h.Host]; dup {
			prev.Hosts = slices.DeleteFunc(prev.Hosts, func(name string) bool { return name == h.Host })
		}
		s.Hosts = append(s.Hosts, h.Host)
		m.byHost[h.Host] = s
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// The distinct lookups of all sets.
	qIndex := map[query]int32{}
	for _, s := range m.Sets {
		key := osv.MatchKey(s.Ecosystem)
		if _, err := versioncmp.ForEcosystem(key); err != nil {
			continue // no version ordering, no findings
		}
		naming := osv.PackageNaming(key)
		s.qs = make([]int32, len(s.pkgs))
		for pi := range s.pkgs {
			q := queryFor(key, naming, &s.pkgs[pi])
			qi, ok := qIndex[q]
			if !ok {
				qi = int32(len(m.queries))
				qIndex[q] = qi
				m.queries = append(m.queries, q)
			}
			s.qs[pi] = qi
		}
	}

	ix.mu.RLock()
	m.hits = make([][]hit, len(m.queries))
	err := parallel(ctx, len(m.queries), func(i int) {
		if h := ix.lookupLocked(m.queries[i], nil); len(h) > 0 {
			m.hits[i] = h
		}
	})
	ix.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	// Entries are never changed once indexed (Add and Remove swap them in
	// and out of the maps), so the hits stay valid after the lock.
	err = parallel(ctx, len(m.Sets), func(si int) {
		s := m.Sets[si]
		for pi, qi := range s.qs {
			if n := len(m.hits[qi]); n > 0 {
				s.order = append(s.order, int32(pi))
				s.n += n
			}
		}
		slices.SortStableFunc(s.order, func(a, b int32) int { return comparePackages(&s.pkgs[a], &s.pkgs[b]) })
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// parallel calls fn(i) for i in [0, n) on GOMAXPROCS goroutines, in
// chunks, and stops handing out work when ctx is done.
func parallel(ctx context.Context, n int, fn func(int)) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	const chunk = 64
	var next int
	var mu sync.Mutex
	take := func() (int, int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || ctx.Err() != nil {
			return 0, 0, false
		}
		lo := next
		next = min(next+chunk, n)
		return lo, next, true
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo, hi, ok := take()
				if !ok {
					return
				}
				for i := lo; i < hi; i++ {
					fn(i)
				}
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// setHasher derives a package set's identity: an order-independent
// 128-bit multiset hash of its packages, memoised per backing array so
// that hosts sharing one slice are hashed once.
type setHasher struct {
	seed1, seed2 maphash.Seed
	bySlice      map[sliceID]string
}

type sliceID struct {
	first *Package
	n     int
}

func newSetHasher() *setHasher {
	return &setHasher{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), bySlice: map[sliceID]string{}}
}

func (s *setHasher) id(pkgs []Package) string {
	if len(pkgs) == 0 {
		return "empty"
	}
	sid := sliceID{&pkgs[0], len(pkgs)}
	if id, ok := s.bySlice[sid]; ok {
		return id
	}
	var h1, h2 maphash.Hash
	h1.SetSeed(s.seed1)
	h2.SetSeed(s.seed2)
	var sum1, sum2 uint64
	for i := range pkgs {
		p := &pkgs[i]
		h1.Reset()
		h2.Reset()
		for _, f := range [...]string{p.Name, p.Version, p.SourceName, p.SourceVersion, p.Arch} {
			h1.WriteString(f)
			h1.WriteByte(0)
			h2.WriteString(f)
			h2.WriteByte(0)
		}
		sum1 += h1.Sum64()
		sum2 += h2.Sum64()
	}
	var b [17]byte
	b[0] = 'h'
	for i := range 8 {
		b[1+i] = byte(sum1 >> (8 * i))
		b[9+i] = byte(sum2 >> (8 * i))
	}
	id := string(b[:])
	s.bySlice[sid] = id
	return id
}
