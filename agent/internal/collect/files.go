package collect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// File types of commonv1.File.
const (
	fileRegular = "file"
	fileDir     = "dir"
	fileSymlink = "symlink"
	fileOther   = "other"
	fileMissing = "missing"
)

// hashBufferSize is the read size for hashing: large enough that a big file
// costs few system calls, small enough to pool one per worker.
const hashBufferSize = 1 << 20

// filesCollector reports the metadata and content hash of watched paths.
type filesCollector struct {
	patterns []string
	// extraMu guards extra, the literal host paths reported besides
	// patterns (SetExtraPaths).
	extraMu      sync.RWMutex
	extra        []string
	metadataOnly []string
	maxHash      int64
	workers      int
	bufs         *sync.Pool
	// openFile opens a regular file for hashing; tests replace it to
	// simulate a file that cannot be read, which root always can otherwise.
	openFile func(name string) (*os.File, error)
}

func newFilesCollector(cfg Config) *filesCollector {
	c := &filesCollector{
		patterns:     cfg.WatchPaths,
		metadataOnly: append(DefaultMetadataOnly(), cfg.MetadataOnly...),
		maxHash:      cfg.MaxHashBytes,
		workers:      runtime.GOMAXPROCS(0),
		bufs:         &sync.Pool{New: func() any { b := make([]byte, hashBufferSize); return &b }},
		openFile:     openNoFollow,
	}
	if c.patterns == nil {
		c.patterns = DefaultWatchPaths()
	}
	if c.maxHash <= 0 {
		c.maxHash = DefaultMaxHashBytes
	}
	return c
}

func (c *filesCollector) Name() string { return "files" }

// SetExtraPaths replaces the literal host paths reported besides the
// configured watch paths; safe to call while a collection runs (it is
// seen by the next one). The paths are never globs: each is reported,
// as missing if it does not exist, exactly like a watched plain path.
//
// The caller (the agent's runner, with the paths of the host's baselines
// from the server) thereby chooses which files are described, never what
// is said about them: the same metadata and SHA-256 as for any watched
// file, never content; metadata-only paths (the password files) are still
// not hashed, symlinks are not followed, FIFOs and devices never opened,
// and files above the hashing cap not read.
func (c *filesCollector) SetExtraPaths(paths []string) {
	c.extraMu.Lock()
	defer c.extraMu.Unlock()
	c.extra = slices.Clone(paths)
}

func (c *filesCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	paths, globErr := c.expand(ctx, h)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	owners := loadOwnerNames(h)

	files := make([]*commonv1.File, len(paths))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(c.workers, len(paths)) {
		wg.Go(func() {
			for i := range jobs {
				files[i] = c.describe(ctx, h, paths[i], owners)
			}
		})
	}
feed:
	for i := range paths {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	items := make([]*commonv1.Item, 0, len(files))
	for _, f := range files {
		it, err := sealed(inventory.KindFile, f.GetPath(), f)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, globErr
}

// expand turns the configured paths and globs into the host paths to report:
// a plain path always (its absence is worth reporting), a glob's matches
// only. Patterns are matched inside the root; a bad pattern is reported
// without losing the others.
func (c *filesCollector) expand(ctx context.Context, h HostFS) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var errs []error
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, pat := range c.patterns {
		if ctx.Err() != nil {
			break
		}
		p := path.Clean("/" + pat)
		if !hasMeta(p) {
			add(p)
			continue
		}
		matches, err := h.glob(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("watch path %q: %w", pat, err))
			continue
		}
		for _, m := range matches {
			add(m)
		}
	}
	c.extraMu.RLock()
	for _, p := range c.extra {
		add(path.Clean("/" + p))
	}
	c.extraMu.RUnlock()
	return out, errors.Join(errs...)
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// glob returns the host paths matching pattern, with directories read inside
// the root; like filepath.Glob it returns existing paths only, sorted, and
// errors only for a malformed pattern.
func (h HostFS) glob(pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	paths := []string{"/"}
	for _, comp := range splitPath(pattern) {
		var next []string
		for _, p := range paths {
			if !hasMeta(comp) {
				next = append(next, path.Join(p, comp))
				continue
			}
			entries, err := h.readDir(p)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if ok, _ := path.Match(comp, e.Name()); ok {
					next = append(next, path.Join(p, e.Name()))
				}
			}
		}
		paths = next
	}
	var out []string
	for _, p := range paths {
		if _, err := h.lstat(p); err == nil {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}

// lstat returns the metadata of host path p itself, its directories resolved
// inside the root but p not followed if it is a symlink, and the path to
// reach it from this process.
func (h HostFS) lstat(p string) (fs.FileInfo, error) {
	real, err := h.lpath(p)
	if err != nil {
		return nil, err
	}
	return os.Lstat(real)
}

// lpath returns where host path p is found from this process, its
// directories resolved inside the root but p itself not followed.
func (h HostFS) lpath(p string) (string, error) {
	dir, exists, err := h.chase(path.Dir(p), true, true)
	if err != nil {
		return "", err
	}
	if !exists {
		return "", &fs.PathError{Op: "lstat", Path: p, Err: fs.ErrNotExist}
	}
	return h.Path(path.Join(dir, path.Base(p))), nil
}

// describe returns the File item body for host path p. Problems reading the
// file go into its error field: the item still tells what could be seen.
func (c *filesCollector) describe(ctx context.Context, h HostFS, p string, owners ownerNames) *commonv1.File {
	f := &commonv1.File{Path: p}
	real, err := h.lpath(p)
	if err != nil {
		f.Type = fileMissing
		if !errors.Is(err, fs.ErrNotExist) {
			f.Error = err.Error()
		}
		return f
	}
	fi, err := os.Lstat(real)
	if err != nil {
		f.Type = fileMissing
		if !errors.Is(err, fs.ErrNotExist) {
			f.Error = err.Error()
		}
		return f
	}
	f.Mode = unixMode(fi.Mode())
	f.Size = fi.Size()
	f.MtimeUnixNano = fi.ModTime().UnixNano()
	if uid, gid, ok := fileOwner(fi); ok {
		f.Uid, f.Gid = uid, gid
		f.Owner, f.Group = owners.users[uid], owners.groups[gid]
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		f.Type = fileSymlink
		target, err := os.Readlink(real)
		if err != nil {
			f.Error = err.Error()
		}
		f.LinkTarget = target
	case fi.IsDir():
		f.Type = fileDir
	case fi.Mode().IsRegular():
		f.Type = fileRegular
		if c.isMetadataOnly(p) {
			break
		}
		sum, err := c.hash(ctx, real, fi)
		if err != nil {
			f.Error = err.Error()
		}
		f.Sha256 = sum
	default:
		// FIFOs, sockets and devices are never opened: opening a FIFO blocks
		// until a writer comes.
		f.Type = fileOther
	}
	return f
}

func (c *filesCollector) isMetadataOnly(p string) bool {
	for _, pat := range c.metadataOnly {
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
	}
	return false
}

// errTooLarge reports a file above the hashing cap.
var errTooLarge = errors.New("too large to hash")

// hash returns the hex SHA-256 of the regular file at real, which Lstat
// described as fi. The file is opened without following a symlink or
// blocking, and checked to still be that file, so a path swapped for a FIFO
// or a link out of the root between the two is refused rather than read.
func (c *filesCollector) hash(ctx context.Context, real string, fi fs.FileInfo) (string, error) {
	if fi.Size() > c.maxHash {
		return "", fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, fi.Size(), c.maxHash)
	}
	file, err := c.openFile(real)
	if err != nil {
		return "", err
	}
	defer file.Close()
	now, err := file.Stat()
	if err != nil {
		return "", err
	}
	if !now.Mode().IsRegular() || !os.SameFile(fi, now) {
		return "", errors.New("file changed while being opened")
	}
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	sum := sha256.New()
	n, err := io.CopyBuffer(sum, io.LimitReader(ctxReader{ctx, file}, c.maxHash+1), *bp)
	if err != nil {
		return "", err
	}
	if n > c.maxHash {
		return "", fmt.Errorf("%w: grew past the limit of %d bytes", errTooLarge, c.maxHash)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// ctxReader stops a long read when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// ownerNames maps ids to names from the host's own passwd and group files,
// not the agent's: in a container they differ.
type ownerNames struct {
	users  map[uint32]string
	groups map[uint32]string
}

// loadOwnerNames reads the host's names; without them files simply have no
// owner names.
func loadOwnerNames(h HostFS) ownerNames {
	o := ownerNames{users: map[uint32]string{}, groups: map[uint32]string{}}
	users, _, _ := readHostFile(h, passwdPath, parsePasswd)
	for _, u := range users {
		if _, ok := o.users[u.GetUid()]; !ok {
			o.users[u.GetUid()] = u.GetName()
		}
	}
	groups, _, _ := readHostFile(h, groupPath, parseGroup)
	for _, g := range groups {
		if _, ok := o.groups[g.GetGid()]; !ok {
			o.groups[g.GetGid()] = g.GetName()
		}
	}
	return o
}

// unixMode converts a Go file mode to st_mode as stat(2) reports it: type
// bits, set-id and sticky bits, permissions.
func unixMode(m fs.FileMode) uint32 {
	const (
		sIFIFO  = 0o010000
		sIFCHR  = 0o020000
		sIFDIR  = 0o040000
		sIFBLK  = 0o060000
		sIFREG  = 0o100000
		sIFLNK  = 0o120000
		sIFSOCK = 0o140000
	)
	v := uint32(m.Perm())
	switch {
	case m&fs.ModeSymlink != 0:
		v |= sIFLNK
	case m.IsDir():
		v |= sIFDIR
	case m&fs.ModeNamedPipe != 0:
		v |= sIFIFO
	case m&fs.ModeSocket != 0:
		v |= sIFSOCK
	case m&fs.ModeCharDevice != 0:
		v |= sIFCHR
	case m&fs.ModeDevice != 0:
		v |= sIFBLK
	default:
		v |= sIFREG
	}
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}
