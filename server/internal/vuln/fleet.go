package vuln

import (
	"context"
	"hash/maphash"
	"iter"
	"runtime"
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

// SetMatch is the result for one distinct package set.
type SetMatch struct {
	Ecosystem string
	SetID     string
	Hosts     []string
	// Findings apply to every host in Hosts; their Host field is empty.
	Findings []Finding
}

// FleetMatch is the result of MatchSets.
type FleetMatch struct {
	Sets   []SetMatch
	byHost map[string]int
}

// Host returns the findings of one host, with Host set.
func (m *FleetMatch) Host(id string) []Finding {
	i, ok := m.byHost[id]
	if !ok {
		return nil
	}
	out := make([]Finding, len(m.Sets[i].Findings))
	for j, f := range m.Sets[i].Findings {
		f.Host = id
		out[j] = f
	}
	return out
}

// All yields every host's findings with Host set, set by set, without
// holding them all in memory.
func (m *FleetMatch) All() iter.Seq[Finding] {
	return func(yield func(Finding) bool) {
		for _, s := range m.Sets {
			for _, h := range s.Hosts {
				for _, f := range s.Findings {
					f.Host = h
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
		n += len(s.Hosts) * len(s.Findings)
	}
	return n
}

// setKey identifies a distinct package set.
type setKey struct{ eco, id string }

// MatchSets matches a fleet: hosts are grouped by (ecosystem, package
// set), every distinct (ecosystem, package name, version) of all sets is
// looked up once, and each set's findings are assembled once and shared
// by the hosts in it. The work is spread over GOMAXPROCS goroutines.
// A host listed twice keeps its last entry.
func (ix *Index) MatchSets(ctx context.Context, hosts []HostPackages) (*FleetMatch, error) {
	m := &FleetMatch{byHost: make(map[string]int, len(hosts))}
	sets := map[setKey]int{}
	setPkgs := [][]Package{}
	hasher := newSetHasher()
	for i := range hosts {
		h := &hosts[i]
		k := setKey{eco: osv.NormalizeEcosystem(h.Ecosystem), id: h.SetID}
		if k.id == "" {
			k.id = hasher.id(h.Packages)
		} else {
			k.id = "id:" + k.id
		}
		si, ok := sets[k]
		if !ok {
			si = len(m.Sets)
			sets[k] = si
			m.Sets = append(m.Sets, SetMatch{Ecosystem: k.eco, SetID: h.SetID})
			setPkgs = append(setPkgs, h.Packages)
		}
		if prev, dup := m.byHost[h.Host]; dup {
			s := &m.Sets[prev]
			for j, name := range s.Hosts {
				if name == h.Host {
					s.Hosts = append(s.Hosts[:j], s.Hosts[j+1:]...)
					break
				}
			}
		}
		m.Sets[si].Hosts = append(m.Sets[si].Hosts, h.Host)
		m.byHost[h.Host] = si
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// The distinct lookups of all sets.
	qIndex := map[query]int32{}
	var queries []query
	setQueries := make([][]int32, len(m.Sets))
	for si := range m.Sets {
		key := osv.MatchKey(m.Sets[si].Ecosystem)
		if _, err := versioncmp.ForEcosystem(key); err != nil {
			continue // no version ordering, no findings
		}
		naming := osv.PackageNaming(key)
		pkgs := setPkgs[si]
		qs := make([]int32, len(pkgs))
		for pi := range pkgs {
			q := queryFor(key, naming, &pkgs[pi])
			qi, ok := qIndex[q]
			if !ok {
				qi = int32(len(queries))
				qIndex[q] = qi
				queries = append(queries, q)
			}
			qs[pi] = qi
		}
		setQueries[si] = qs
	}

	ix.mu.RLock()
	defer ix.mu.RUnlock()
	hits := make([][]hit, len(queries))
	err := parallel(ctx, len(queries), func(i int) {
		if h := ix.lookupLocked(queries[i], nil); len(h) > 0 {
			hits[i] = h
		}
	})
	if err != nil {
		return nil, err
	}
	err = parallel(ctx, len(m.Sets), func(si int) {
		var out []Finding
		pkgs := setPkgs[si]
		for pi, qi := range setQueries[si] {
			if len(hits[qi]) > 0 {
				out = appendFindings(out, &pkgs[pi], queries[qi], hits[qi])
			}
		}
		sortFindings(out)
		m.Sets[si].Findings = out
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
