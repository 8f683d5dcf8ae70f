package collect

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// apkInstalledPaths are where apk-tools keeps its database of installed
// packages: the classic place, and the one apk-tools 3 uses on a root whose
// /lib is not the database's home (a merged /usr).
var apkInstalledPaths = []string{"/lib/apk/db/installed", "/usr/lib/apk/db/installed"}

// apkCollector reports the packages of Alpine's apk database, those
// `apk info -v` lists.
type apkCollector struct{}

func (apkCollector) Name() string { return "apk" }

func (apkCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	for _, p := range apkInstalledPaths {
		pkgs, found, err := readHostFile(h, p, parseApkInstalled)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return apkItems(pkgs)
	}
	return nil, nil
}

// apkItems keys packages "apk:<name>:<arch>". apk installs one version of a
// name; a name twice is a damaged database, and both stay visible.
func apkItems(pkgs []*commonv1.Package) ([]*commonv1.Item, error) {
	items := make([]*commonv1.Item, 0, len(pkgs))
	seen := map[string]int{}
	for _, p := range pkgs {
		k := "apk:" + p.GetName() + ":" + p.GetArch()
		seen[k]++
		if n := seen[k]; n > 1 {
			k += "#" + strconv.Itoa(n)
		}
		it, err := sealed(inventory.KindPackage, k, p)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// parseApkInstalled parses apk's installed database: one stanza per package,
// separated by blank lines, of "X:value" lines where the letter X names the
// field (apk-tools' database.c). The package's own fields come first: P
// name, V version, A architecture, o origin (the source package), m
// maintainer, t build time; then its files (F, R, a, Z, M...), which are
// skipped.
func parseApkInstalled(r io.Reader) ([]*commonv1.Package, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		out  []*commonv1.Package
		cur  *commonv1.Package
		line int
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		if cur.Name == "" {
			return fmt.Errorf("line %d: package without a P: field", line)
		}
		if cur.Version == "" {
			return fmt.Errorf("line %d: package %s without a V: field", line, cur.Name)
		}
		if cur.SourceName == "" {
			cur.SourceName = cur.Name
		}
		cur.SourceVersion = cur.Version
		cur.UpstreamVersion, cur.Release = splitApkVersion(cur.Version)
		out = append(out, cur)
		cur = nil
		return nil
	}
	for {
		b, err := readLongLine(br, 1<<20)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line+1, err)
		}
		line++
		b = bytes.TrimRight(b, "\r")
		if len(b) == 0 {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if len(b) < 2 || b[1] != ':' {
			return nil, fmt.Errorf("line %d: not a field", line)
		}
		if cur == nil {
			cur = &commonv1.Package{Manager: "apk", Status: "installed"}
		}
		v := string(b[2:])
		// Only the kept fields must be text; file names need not be.
		if strings.IndexByte("PVAo", b[0]) >= 0 && !utf8.ValidString(v) {
			return nil, fmt.Errorf("line %d: %c: value is not UTF-8", line, b[0])
		}
		switch b[0] {
		case 'P':
			cur.Name = v
		case 'V':
			cur.Version = v
		case 'A':
			cur.Arch = v
		case 'o':
			cur.SourceName = v
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// readLongLine returns the next line without its newline, failing on one
// longer than limit rather than holding it all in memory.
func readLongLine(br *bufio.Reader, limit int) ([]byte, error) {
	var buf []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				return buf, nil
			}
			return nil, err
		}
		if !isPrefix && buf == nil {
			return chunk, nil
		}
		buf = append(buf, chunk...)
		if len(buf) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		if !isPrefix {
			return buf, nil
		}
	}
}

// splitApkVersion splits an apk version "1.2.4-r2" into the upstream version
// and the package release "r2". A version without a release is returned
// whole as the upstream version.
func splitApkVersion(v string) (upstream, release string) {
	i := strings.LastIndex(v, "-r")
	if i <= 0 || !isDigits(v[i+2:]) {
		return v, ""
	}
	return v[:i], v[i+1:]
}
