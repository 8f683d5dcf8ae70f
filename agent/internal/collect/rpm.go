package collect

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/knqyf263/go-rpmdb/pkg/bdb"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// rpmDBDirs are where rpm keeps its database: the classic place, and the one
// newer Fedora and SUSE releases use (with the classic one a symlink to it).
var rpmDBDirs = []string{"/var/lib/rpm", "/usr/lib/sysimage/rpm"}

// errRPMFormat reports an rpm database in a format this build cannot read.
var errRPMFormat = errors.New("rpm database format unsupported by this build")

// rpmCollector reports the packages of the rpm database. It reads the
// Berkeley DB format (RHEL/CentOS up to 8, older SUSE) through go-rpmdb,
// the SQLite one (RHEL 9, Fedora 33+) through a pure-Go SQLite
// (rpm_sqlite.go) and SUSE's NDB (rpm_ndb.go); a database it cannot read is
// reported as an error rather than as a host without packages.
type rpmCollector struct{}

func (rpmCollector) Name() string { return "rpm" }

func (rpmCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	for _, dir := range rpmDBDirs {
		// rpm uses whichever database its configuration names; a newer format
		// beside an old Packages file is the one in use after a conversion.
		for _, other := range rpmNewerFormats {
			resolved, exists, _ := h.chase(dir+"/"+other.file, true, true)
			if !exists {
				continue
			}
			if other.read == nil {
				return nil, fmt.Errorf("%s/%s: %w", dir, other.file, errRPMFormat)
			}
			pkgs, err := other.read(ctx, h.Path(resolved))
			if err != nil {
				return nil, fmt.Errorf("%s/%s: %w", dir, other.file, err)
			}
			return rpmItems(pkgs)
		}
		real, err := h.resolve(dir + "/Packages")
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pkgs, err := readRPMBerkeleyDB(ctx, real)
		if err != nil {
			return nil, fmt.Errorf("%s/Packages: %w", dir, err)
		}
		return rpmItems(pkgs)
	}
	return nil, nil
}

// readRPMBerkeleyDB reads every package header of a Berkeley DB rpm
// database. go-rpmdb's own package list drops the install time, so the
// headers are parsed here from the raw values its bdb reader returns.
func readRPMBerkeleyDB(ctx context.Context, file string) (pkgs []*commonv1.Package, err error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	db, err := bdb.Open(file)
	if err != nil {
		return nil, err
	}
	entries := db.Read()
	// The reader's goroutine blocks until each value is taken; drain it on an
	// early return so it ends. (Its file is closed only by the garbage
	// collector: this go-rpmdb version has no Close.)
	defer func() {
		for range entries {
		}
	}()
	for e := range entries {
		if e.Err != nil {
			return nil, e.Err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := parseRPMHeader(e.Value)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// rpmItems keys packages by name and architecture. rpm installs some
// packages several times side by side (kernels, gpg-pubkey); every package of
// such a group, not only the second, gets its version appended to its key,
// so that no key depends on the order of the database.
func rpmItems(pkgs []*commonv1.Package) ([]*commonv1.Item, error) {
	count := map[string]int{}
	for _, p := range pkgs {
		count[p.GetName()+":"+p.GetArch()]++
	}
	keys := make([]string, len(pkgs))
	seen := map[string]int{}
	for i, p := range pkgs {
		k := "rpm:" + p.GetName() + ":" + p.GetArch()
		if count[p.GetName()+":"+p.GetArch()] > 1 {
			k += ":" + p.GetVersion()
		}
		// The same NEVRA twice is a damaged database; keep both visible.
		if n := seen[k]; n > 0 {
			seen[k]++
			k += "#" + strconv.Itoa(n+1)
		} else {
			seen[k] = 1
		}
		keys[i] = k
	}
	items := make([]*commonv1.Item, 0, len(pkgs))
	for i, p := range pkgs {
		it, err := sealed(inventory.KindPackage, keys[i], p)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// Header tags and types, from rpm's lib/rpmtag.h.
const (
	rpmTagName        = 1000
	rpmTagVersion     = 1001
	rpmTagRelease     = 1002
	rpmTagEpoch       = 1003
	rpmTagInstallTime = 1008
	rpmTagVendor      = 1011
	rpmTagArch        = 1022
	rpmTagSourceRPM   = 1044

	rpmTypeInt32  = 4
	rpmTypeString = 6

	// rpmMaxHeader is rpm's own limit on a header's size (headerMaxbytes).
	rpmMaxHeader = 256 << 20
)

// parseRPMHeader decodes the fields the inventory uses from a header blob as
// rpm stores it in its database: a count of index entries il and a data
// length dl (big-endian int32s), il entries of tag, type, offset and count,
// then dl bytes of data the entries point into.
func parseRPMHeader(b []byte) (*commonv1.Package, error) {
	if len(b) < 8 {
		return nil, errors.New("rpm header: too short")
	}
	il := int64(int32(binary.BigEndian.Uint32(b[0:])))
	dl := int64(int32(binary.BigEndian.Uint32(b[4:])))
	if il < 1 || dl < 0 || il*16+dl > rpmMaxHeader || 8+il*16+dl > int64(len(b)) {
		return nil, fmt.Errorf("rpm header: %d entries and %d data bytes do not fit in %d bytes", il, dl, len(b))
	}
	index := b[8 : 8+il*16]
	data := b[8+il*16 : 8+il*16+dl]

	p := &commonv1.Package{Manager: "rpm", Status: "installed"}
	var (
		hasEpoch                  bool
		name, ver, rel, sourceRPM string
		errs                      []error
	)
	for i := int64(0); i < il; i++ {
		e := index[i*16:]
		tag := binary.BigEndian.Uint32(e[0:])
		typ := binary.BigEndian.Uint32(e[4:])
		off := int64(int32(binary.BigEndian.Uint32(e[8:])))
		switch tag {
		case rpmTagName, rpmTagVersion, rpmTagRelease, rpmTagVendor, rpmTagArch, rpmTagSourceRPM:
			if typ != rpmTypeString {
				errs = append(errs, fmt.Errorf("rpm header: tag %d has type %d", tag, typ))
				continue
			}
			s := rpmString(data, off)
			switch tag {
			case rpmTagName:
				name = s
			case rpmTagVersion:
				ver = s
			case rpmTagRelease:
				rel = s
			case rpmTagVendor:
				p.Vendor = s
			case rpmTagArch:
				p.Arch = s
			case rpmTagSourceRPM:
				sourceRPM = s
			}
		case rpmTagEpoch, rpmTagInstallTime:
			if typ != rpmTypeInt32 {
				errs = append(errs, fmt.Errorf("rpm header: tag %d has type %d", tag, typ))
				continue
			}
			v, ok := rpmInt32(data, off)
			if !ok {
				errs = append(errs, fmt.Errorf("rpm header: tag %d outside the data", tag))
				continue
			}
			if tag == rpmTagEpoch {
				p.Epoch, hasEpoch = v, true
			} else {
				p.InstallTime = int64(v)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("rpm header: no name")
	}
	if p.Vendor == "(none)" {
		p.Vendor = ""
	}
	p.Name, p.UpstreamVersion, p.Release = name, ver, rel
	p.Version = rpmEVR(hasEpoch, p.Epoch, ver, rel)
	p.SourceName, p.SourceVersion = name, p.Version
	if n, v, ok := splitSourceRPM(sourceRPM); ok {
		p.SourceName, p.SourceVersion = n, v
	}
	return p, nil
}

// rpmEVR formats a version as rpm prints %{EVR}: the epoch only when the
// header has one.
func rpmEVR(hasEpoch bool, epoch uint32, version, release string) string {
	evr := version
	if release != "" {
		evr += "-" + release
	}
	if hasEpoch {
		evr = strconv.FormatUint(uint64(epoch), 10) + ":" + evr
	}
	return evr
}

// splitSourceRPM splits "name-version-release.src.rpm" (or .nosrc.rpm) into
// name and "version-release".
func splitSourceRPM(s string) (name, version string, ok bool) {
	base, found := strings.CutSuffix(s, ".src.rpm")
	if !found {
		if base, found = strings.CutSuffix(s, ".nosrc.rpm"); !found {
			return "", "", false
		}
	}
	r := strings.LastIndexByte(base, '-')
	if r <= 0 {
		return "", "", false
	}
	v := strings.LastIndexByte(base[:r], '-')
	if v <= 0 {
		return "", "", false
	}
	return base[:v], base[v+1:], true
}

// rpmString returns the NUL-terminated string at off in data.
func rpmString(data []byte, off int64) string {
	if off < 0 || off >= int64(len(data)) {
		return ""
	}
	s := data[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// rpmInt32 returns the big-endian int32 at off in data.
func rpmInt32(data []byte, off int64) (uint32, bool) {
	if off < 0 || off+4 > int64(len(data)) {
		return 0, false
	}
	return binary.BigEndian.Uint32(data[off:]), true
}
