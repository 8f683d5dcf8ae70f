package collect

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

const (
	dpkgStatusPath  = "/var/lib/dpkg/status"
	dpkgUpdatesPath = "/var/lib/dpkg/updates"
)

// dpkgCollector reports the packages of the dpkg database, exactly those
// `dpkg-query -W` lists.
type dpkgCollector struct{}

func (dpkgCollector) Name() string { return "dpkg" }

func (dpkgCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	db, found, err := readHostFile(h, dpkgStatusPath, parseDpkgStanzas)
	if err != nil || !found {
		return nil, err
	}
	// dpkg journals each change it makes to a package in updates/ before it
	// rewrites the status file; dpkg-query applies the journal on read, so an
	// interrupted dpkg run leaves the truth there.
	updates, err := h.readDir(dpkgUpdatesPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", dpkgUpdatesPath, err)
	}
	slices.SortFunc(updates, func(a, b fs.DirEntry) int { return compareNumeric(a.Name(), b.Name()) })
	for _, u := range updates {
		if !isDigits(u.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := path.Join(dpkgUpdatesPath, u.Name())
		more, _, err := readHostFile(h, p, parseDpkgStanzas)
		if err != nil {
			return nil, err
		}
		db = append(db, more...)
	}
	pkgs := dpkgPackages(db)
	items := make([]*commonv1.Item, 0, len(pkgs))
	for _, p := range pkgs {
		it, err := sealed(inventory.KindPackage, "dpkg:"+p.GetName()+":"+p.GetArch(), p)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// parseDpkgStatus parses a dpkg status file into the packages dpkg-query -W
// would list: every stanza but those in the not-installed state.
func parseDpkgStatus(r io.Reader) ([]*commonv1.Package, error) {
	stanzas, err := parseDpkgStanzas(r)
	if err != nil {
		return nil, err
	}
	return dpkgPackages(stanzas), nil
}

// dpkgStanza holds the fields of one status stanza that the inventory uses.
type dpkgStanza struct {
	pkg, version, arch, source, status string
}

// dpkgPackages turns stanzas into packages. A later stanza for the same
// package and architecture replaces an earlier one, as a journal entry in
// updates/ replaces the status file's.
func dpkgPackages(stanzas []dpkgStanza) []*commonv1.Package {
	index := map[string]int{}
	var latest []dpkgStanza
	for _, s := range stanzas {
		k := s.pkg + ":" + s.arch
		if i, ok := index[k]; ok {
			latest[i] = s
			continue
		}
		index[k] = len(latest)
		latest = append(latest, s)
	}
	var pkgs []*commonv1.Package
	for _, s := range latest {
		// A package without a state is one dpkg only knows of, like a purged
		// one still selected for install; dpkg-query -W skips those.
		if s.status == "" || s.status == "not-installed" {
			continue
		}
		version, epoch, upstream, revision := splitDebVersion(s.version)
		srcName, srcVersion := s.pkg, version
		if s.source != "" {
			srcName, _, _ = strings.Cut(s.source, " ")
			if _, v, ok := strings.Cut(s.source, "("); ok {
				v, _, _ = strings.Cut(v, ")")
				srcVersion, _, _, _ = splitDebVersion(v)
			}
		}
		pkgs = append(pkgs, &commonv1.Package{
			Manager:         "dpkg",
			Name:            s.pkg,
			Version:         version,
			Arch:            s.arch,
			SourceName:      srcName,
			SourceVersion:   srcVersion,
			Status:          s.status,
			Epoch:           epoch,
			UpstreamVersion: upstream,
			Release:         revision,
		})
	}
	return pkgs
}

// splitDebVersion splits a Debian version into epoch, upstream version and
// revision, and returns it formatted as dpkg-query prints it: a zero epoch
// is dropped. A version that is not well formed is returned as it is.
func splitDebVersion(v string) (version string, epoch uint32, upstream, revision string) {
	v = strings.TrimSpace(v)
	rest := v
	if e, r, ok := strings.Cut(v, ":"); ok {
		n, err := strconv.ParseUint(e, 10, 31)
		if err != nil {
			return v, 0, v, ""
		}
		epoch, rest = uint32(n), r
	}
	upstream = rest
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		upstream, revision = rest[:i], rest[i+1:]
	}
	if epoch == 0 {
		return rest, 0, upstream, revision
	}
	return strconv.FormatUint(uint64(epoch), 10) + ":" + rest, epoch, upstream, revision
}

// parseDpkgStanzas splits a deb822 control file into stanzas and keeps the
// fields the inventory needs. Field names are case-insensitive and values of
// the kept fields are single lines; continuation lines (Description,
// Conffiles) are accepted and skipped.
func parseDpkgStanzas(r io.Reader) ([]dpkgStanza, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var (
		out    []dpkgStanza
		cur    dpkgStanza
		fields int
		line   int
	)
	flush := func() error {
		if fields == 0 {
			return nil
		}
		if cur.pkg == "" {
			return fmt.Errorf("line %d: stanza without a Package field", line)
		}
		out = append(out, cur)
		cur, fields = dpkgStanza{}, 0
		return nil
	}
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 && (len(b) == 0 || fields == 0) {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if b[0] == ' ' || b[0] == '\t' {
			if fields == 0 {
				return nil, fmt.Errorf("line %d: continuation line outside a field", line)
			}
			continue
		}
		name, value, ok := bytes.Cut(b, []byte(":"))
		if !ok || len(name) == 0 {
			return nil, fmt.Errorf("line %d: not a field", line)
		}
		fields++
		v := string(bytes.TrimSpace(value))
		switch strings.ToLower(string(name)) {
		case "package":
			cur.pkg = v
		case "version":
			cur.version = v
		case "architecture":
			cur.arch = v
		case "source":
			cur.source = v
		case "status":
			if f := strings.Fields(v); len(f) == 3 {
				cur.status = f[2]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// compareNumeric orders digit strings by value, others after them by name.
func compareNumeric(a, b string) int {
	if isDigits(a) && isDigits(b) {
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			return len(a) - len(b)
		}
	}
	return strings.Compare(a, b)
}
