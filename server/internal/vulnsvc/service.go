// Package vulnsvc is the server's vulnerability service: it keeps the OSV
// advisory database in the store, shared by replicas, mirrors it in an
// in-memory vuln.Index, imports offline OSV sources, and answers each
// host's findings with mutes and a risk score applied.
//
// # Caching and incremental matching
//
// Findings are computed on demand and cached per distinct package set
// (the host's ecosystem and the hashes of its installed package items), so
// hosts built from one image are matched once. When a host's package set
// changes, only the packages that differ from its previous set are
// matched; the rest keep their findings. When the database changes (an
// import here, or on another replica, noticed through the store's
// advisory revision), only the cached packages whose name or source name
// an imported record names, or whose findings cite a changed advisory,
// are matched again.
//
// The index and the cache are per replica and in memory: each replica
// builds its index from the store when it starts and follows the store's
// revision afterwards; the cache starts empty and fills as hosts are
// asked for.
package vulnsvc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/pkg/osv"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/vuln"
)

// Store is what the service reads and writes.
type Store interface {
	store.Advisories
	store.Mutes
	GetHost(ctx context.Context, id string) (*store.Host, error)
	ListHosts(ctx context.Context) ([]*store.Host, error)
	ListItems(ctx context.Context, hostID, kind string) ([]*commonv1.Item, error)
}

// BatchSize is how many advisories an import puts per store transaction.
const BatchSize = 500

// Service is the vulnerability service. It is safe for concurrent use.
type Service struct {
	st  Store
	log *slog.Logger
	now func() time.Time
	ix  *vuln.Index

	importMu sync.Mutex // one import at a time per replica
	syncMu   sync.Mutex // one index refresh at a time

	mu      sync.Mutex
	rev     uint64               // store revision the index reflects
	sets    map[setKey]*setEntry // cache of distinct package sets
	hostSet map[string]setKey    // each host's current set
	// matched counts packages matched, for tests of incrementality.
	matched int
}

// setKey identifies a distinct package set on one ecosystem.
type setKey struct{ eco, hash string }

// setEntry is a cached package set with its findings per package.
type setEntry struct {
	pkgs     []vuln.Package
	findings map[string][]vuln.Finding // by pkgID
	hosts    map[string]bool
}

// Options configures New.
type Options struct {
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New returns a service on st. Call Sync to load the index before
// serving; every query also syncs, so a stale index catches up.
func New(st Store, opts Options) *Service {
	s := &Service{
		st: st, log: opts.Logger, now: opts.Now, ix: vuln.NewIndex(),
		sets: map[setKey]*setEntry{}, hostSet: map[string]setKey{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "vulnsvc")
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Len returns the number of advisories the index matches with.
func (s *Service) Len() int { return s.ix.Len() }

// Sync brings the index up to the store's advisory revision, reading only
// the advisories put since the last sync, and re-matches the cached
// packages they concern.
func (s *Service) Sync(ctx context.Context) error {
	st, err := s.st.GetAdvisoryState(ctx)
	if err != nil {
		return fmt.Errorf("vulnerability database state: %w", err)
	}
	s.mu.Lock()
	current := s.rev
	s.mu.Unlock()
	if st.Revision == current {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	from := s.rev
	s.mu.Unlock()
	if st.Revision == from {
		return nil // another caller synced meanwhile
	}
	names := map[string]bool{}
	ids := map[string]bool{}
	top := from
	n := 0
	err = s.st.AdvisoriesSince(ctx, from, func(a store.StoredAdvisory) error {
		top = max(top, a.Revision)
		rec, err := osv.ParseBytes(a.Raw)
		if err != nil {
			s.log.Warn("stored advisory is invalid; skipped", "id", a.ID, "err", err)
			return nil
		}
		if err := s.ix.Add(rec); err != nil {
			return err
		}
		n++
		ids[rec.ID] = true
		for _, aff := range rec.Affected {
			names[aff.Package.Name] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load advisories: %w", err)
	}
	s.mu.Lock()
	s.rev = top
	s.rematchLocked(names, ids)
	s.mu.Unlock()
	s.log.Info("vulnerability index synced", "from_revision", from, "revision", top, "advisories_read", n, "advisories", s.ix.Len())
	return nil
}

// rematchLocked matches again the cached packages that changed records
// may concern. The caller holds s.mu.
func (s *Service) rematchLocked(names, ids map[string]bool) {
	for k, e := range s.sets {
		var redo []vuln.Package
		for _, p := range e.pkgs {
			id := pkgID(&p)
			hit := names[p.Name] || names[p.SourceName]
			for _, f := range e.findings[id] {
				hit = hit || ids[f.AdvisoryID]
			}
			if hit {
				redo = append(redo, p)
			}
		}
		s.matchIntoLocked(k.eco, e, redo)
	}
}

// matchIntoLocked matches pkgs and stores their findings in e.
func (s *Service) matchIntoLocked(eco string, e *setEntry, pkgs []vuln.Package) {
	if len(pkgs) == 0 {
		return
	}
	s.matched += len(pkgs)
	for _, p := range pkgs {
		delete(e.findings, pkgID(&p))
	}
	for _, f := range s.ix.Match(eco, pkgs) {
		// Findings carry the binary's identity; key them back to it.
		p := vuln.Package{Name: f.Package, Version: f.InstalledVersion, Arch: f.Arch}
		for i := range pkgs {
			if pkgs[i].Name == p.Name && pkgs[i].Version == p.Version && pkgs[i].Arch == p.Arch {
				id := pkgID(&pkgs[i])
				e.findings[id] = append(e.findings[id], f)
				break
			}
		}
	}
}

func pkgID(p *vuln.Package) string {
	return p.Name + "\x00" + p.Version + "\x00" + p.SourceName + "\x00" + p.SourceVersion + "\x00" + p.Arch
}

// installedPackages returns the host's installed packages as the matcher
// takes them, and the identity of the set: the hash of their item hashes.
// Packages in another state (dpkg "config-files", "half-installed") are
// left out: their files are not, or not all, on the host.
func installedPackages(items []*commonv1.Item) ([]vuln.Package, string) {
	h := sha256.New()
	var pkgs []vuln.Package
	for _, it := range items {
		p := it.GetPackage()
		if p == nil || (p.GetStatus() != "" && p.GetStatus() != "installed") {
			continue
		}
		h.Write([]byte(it.GetKey()))
		h.Write([]byte{0})
		h.Write(it.GetHash())
		pkgs = append(pkgs, vuln.Package{
			Name: p.GetName(), Version: p.GetVersion(), Arch: p.GetArch(),
			SourceName: p.GetSourceName(), SourceVersion: p.GetSourceVersion(),
		})
	}
	return pkgs, string(h.Sum(nil))
}

// hostFindings returns the host's findings (without mutes), matching
// what is not cached yet.
func (s *Service) hostFindings(hostID, eco string, pkgs []vuln.Package, hash string) []vuln.Finding {
	k := setKey{eco, hash}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sets[k]
	if !ok {
		e = &setEntry{pkgs: pkgs, findings: map[string][]vuln.Finding{}, hosts: map[string]bool{}}
		todo := pkgs
		if prevKey, had := s.hostSet[hostID]; had && prevKey.eco == eco {
			if prev := s.sets[prevKey]; prev != nil {
				// The host's set changed: keep the findings of the packages
				// it still has, match the others.
				known := make(map[string]bool, len(prev.pkgs))
				for _, p := range prev.pkgs {
					known[pkgID(&p)] = true
				}
				todo = nil
				for _, p := range pkgs {
					id := pkgID(&p)
					if known[id] {
						if fs := prev.findings[id]; len(fs) > 0 {
							e.findings[id] = fs
						}
					} else {
						todo = append(todo, p)
					}
				}
			}
		}
		s.matchIntoLocked(eco, e, todo)
		s.sets[k] = e
	}
	if prevKey, had := s.hostSet[hostID]; had && prevKey != k {
		if prev := s.sets[prevKey]; prev != nil {
			delete(prev.hosts, hostID)
			if len(prev.hosts) == 0 {
				delete(s.sets, prevKey)
			}
		}
	}
	s.hostSet[hostID] = k
	e.hosts[hostID] = true
	var out []vuln.Finding
	for _, p := range e.pkgs {
		out = append(out, e.findings[pkgID(&p)]...)
	}
	slices.SortStableFunc(out, func(a, b vuln.Finding) int {
		return cmp.Or(cmp.Compare(a.Package, b.Package), cmp.Compare(a.Arch, b.Arch), cmp.Compare(a.AdvisoryID, b.AdvisoryID))
	})
	return out
}

// stored turns a record into what the store keeps.
func stored(rec *osv.Record) (store.StoredAdvisory, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return store.StoredAdvisory{}, fmt.Errorf("encode advisory %s: %w", rec.ID, err)
	}
	a := store.StoredAdvisory{ID: rec.ID, Modified: rec.Modified, Withdrawn: rec.IsWithdrawn(), Raw: raw}
	for _, aff := range rec.Affected {
		if eco := osv.MatchKey(aff.Package.Ecosystem); !slices.Contains(a.Ecosystems, eco) {
			a.Ecosystems = append(a.Ecosystems, eco)
		}
		if !slices.Contains(a.Packages, aff.Package.Name) {
			a.Packages = append(a.Packages, aff.Package.Name)
		}
	}
	return a, nil
}

// Progress is reported while an import runs.
type Progress struct {
	Files  int // files read so far
	Stored int // records stored so far
}

// Import reads the OSV records at path (a directory, a .zip as OSV
// publishes per ecosystem, or one .json file; see osv.Scan), stores the
// new and newer ones in batches of BatchSize, and brings the index up to
// date, re-matching only what the stored records concern. Invalid files
// are listed in the report and the rest is imported. progress, when not
// nil, is called after every batch.
func (s *Service) Import(ctx context.Context, path string, progress func(Progress)) (osv.Report, error) {
	s.importMu.Lock()
	defer s.importMu.Unlock()
	// The index, synced with the store, tells what is stored already.
	if err := s.Sync(ctx); err != nil {
		return osv.Report{}, err
	}
	var batch []store.StoredAdvisory
	var p Progress
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.st.PutAdvisories(ctx, batch, s.now()); err != nil {
			return err
		}
		p.Stored += len(batch)
		batch = batch[:0]
		if progress != nil {
			progress(p)
		}
		return nil
	}
	rep, err := osv.Import(ctx, path, s.ix, func(rec *osv.Record) error {
		a, err := stored(rec)
		if err != nil {
			return err
		}
		batch = append(batch, a)
		if len(batch) >= BatchSize {
			return flush()
		}
		return nil
	})
	p.Files = rep.Files
	if err == nil {
		err = flush()
	}
	// What was stored is synced even when the import stopped half way.
	if serr := s.Sync(context.WithoutCancel(ctx)); err == nil {
		err = serr
	}
	if err != nil {
		return rep, fmt.Errorf("import %s: %w", path, err)
	}
	s.log.Info("vulnerability database imported", "files", rep.Files, "added", rep.Added, "updated", rep.Updated,
		"unchanged", rep.Unchanged, "withdrawn", rep.Withdrawn, "invalid", len(rep.Invalid))
	return rep, nil
}

// ErrNoEcosystem is the Reason of a host report whose OS has no OSV
// ecosystem (or no OS facts yet).
const ErrNoEcosystem = "no OSV ecosystem for this host's OS"

// HostEcosystem returns the host's OSV ecosystem from its OS facts.
func HostEcosystem(h *store.Host) (string, error) {
	if h.Facts == nil {
		return "", fmt.Errorf("%w: the host has reported no OS facts", osv.ErrUnsupportedOS)
	}
	return osv.HostEcosystem(h.Facts.GetPlatform(), h.Facts.GetPlatformVersion())
}

// kindPackage and kindPort are the item kinds read.
const (
	kindPackage = inventory.KindPackage
	kindPort    = inventory.KindPort
)
