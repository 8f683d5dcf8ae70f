package watch

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
)

// sources is a set of collectors whose data changed, one bit each.
type sources uint16

// The collectors the watcher knows the sources of, in delivery order. Their
// names are those of collect.Collector.Name.
const (
	srcFiles sources = 1 << iota
	srcDpkg
	srcRPM
	srcAPK
	srcUsers
	srcGroups
	srcSystemd
)

var sourceNames = []struct {
	s    sources
	name string
}{
	{srcFiles, "files"},
	{srcDpkg, "dpkg"},
	{srcRPM, "rpm"},
	{srcAPK, "apk"},
	{srcUsers, "users"},
	{srcGroups, "groups"},
	{srcSystemd, "systemd"},
}

// names returns the collector names in s, nil for none.
func (s sources) names() []string {
	var out []string
	for _, n := range sourceNames {
		if s&n.s != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// Where the package managers keep their databases, as the collectors read
// them (collect's dpkg.go, rpm.go and apk.go).
const (
	dpkgStatusPath  = "/var/lib/dpkg/status"
	dpkgUpdatesPath = "/var/lib/dpkg/updates/*"
)

var (
	// The rpm collector reads the Berkeley DB Packages file and looks for
	// the newer formats; rpm's lock and environment files (.rpm.lock,
	// __db.00N), touched by every query, are left out.
	rpmPaths = func() []string {
		var out []string
		for _, dir := range []string{"/var/lib/rpm", "/usr/lib/sysimage/rpm"} {
			for _, name := range []string{"Packages", "Packages.db", "rpmdb.sqlite", "rpmdb.sqlite-wal"} {
				out = append(out, dir+"/"+name)
			}
		}
		return out
	}()
	apkPaths = []string{"/lib/apk/db/installed", "/usr/lib/apk/db/installed"}
	// systemd's system unit search path (collect's unitSearchPaths); each
	// directory's units and the .wants/, .requires/ and .d/ directories in
	// it.
	systemdDirs = []string{
		"/etc/systemd/system.control",
		"/run/systemd/system.control",
		"/run/systemd/transient",
		"/run/systemd/generator.early",
		"/etc/systemd/system",
		"/etc/systemd/system.attached",
		"/run/systemd/system",
		"/run/systemd/system.attached",
		"/run/systemd/generator",
		"/usr/local/lib/systemd/system",
		"/lib/systemd/system",
		"/usr/lib/systemd/system",
		"/run/systemd/generator.late",
	}
)

// target is one host path or glob whose changes concern src.
type target struct {
	// comps are the path's components, which may hold glob patterns.
	comps []string
	src   sources
	// inside is set for files targets: a directory the path names is
	// watched too, because its mtime changes with its entries.
	inside bool
	// skip, when set, drops names the last component matches but the
	// collector does not read.
	skip func(name string) bool
}

func (t *target) skips(name string) bool { return t.skip != nil && t.skip(name) }

// targets returns what to watch for the enabled collectors, extra being
// literal paths of the files collector besides its watch paths. Only the
// Linux collectors read files; those of Windows ask the running system, so
// there is nothing to watch for them.
func targets(watchPaths, collectors, extra []string) []*target {
	if runtime.GOOS != "linux" {
		return nil
	}
	var ts []*target
	add := func(src sources, inside bool, skip func(string) bool, paths ...string) {
		for _, p := range paths {
			ts = append(ts, &target{comps: splitPath(path.Clean("/" + p)), src: src, inside: inside, skip: skip})
		}
	}
	on := func(name string) bool { return slices.Contains(collectors, name) }
	if on("files") {
		if watchPaths == nil {
			watchPaths = collect.DefaultWatchPaths()
		}
		add(srcFiles, true, nil, watchPaths...)
		for _, p := range extra {
			if !slices.Contains(watchPaths, p) {
				add(srcFiles, true, nil, escapeMeta(p))
			}
		}
		// File items carry owner names, read from the host's account files.
		add(srcFiles, false, nil, "/etc/passwd", "/etc/group")
	}
	if on("dpkg") {
		// dpkg journals into updates/ under numeric names; tmp.i becomes
		// one by rename.
		add(srcDpkg, false, nil, dpkgStatusPath)
		add(srcDpkg, false, func(name string) bool { return !isDigits(name) }, dpkgUpdatesPath)
	}
	if on("rpm") {
		add(srcRPM, false, nil, rpmPaths...)
	}
	if on("apk") {
		add(srcAPK, false, nil, apkPaths...)
	}
	if on("users") {
		add(srcUsers, false, nil, "/etc/passwd", "/etc/shadow")
	}
	if on("groups") {
		add(srcGroups, false, nil, "/etc/group")
	}
	if on("systemd") {
		for _, d := range systemdDirs {
			add(srcSystemd, false, nil, d+"/*", d+"/*/*")
		}
	}
	return ts
}

// interest is what a watched directory is watched for: the entries that
// match component i of target t, or any entry when i is past the last
// component (the directory is one the target names).
type interest struct {
	t *target
	i int
}

// walk adds to want the directories target t needs from the host directory
// dir, which matches its first i components: dir itself, watched for
// component i, and, for each existing directory matching component i, what
// that one needs in turn. dir is a host path without symbolic links.
func (w *Watcher) walk(want map[string][]interest, t *target, dir string, i int) {
	key := w.real(dir)
	in := interest{t, i}
	if !slices.Contains(want[key], in) {
		want[key] = append(want[key], in)
	}
	n := len(t.comps)
	if i == n || (i == n-1 && !t.inside) {
		return
	}
	comp := t.comps[i]
	if !hasMeta(comp) {
		if next, ok := w.resolveDir(path.Join(dir, comp)); ok {
			w.walk(want, t, next, i+1)
		}
		return
	}
	entries, err := os.ReadDir(key)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type()&(fs.ModeDir|fs.ModeSymlink) == 0 || !match(comp, e.Name()) {
			continue
		}
		if i == n-1 && t.skips(e.Name()) {
			continue
		}
		if next, ok := w.resolveDir(path.Join(dir, e.Name())); ok {
			w.walk(want, t, next, i+1)
		}
	}
}

// real returns where the host path p is found from this process.
func (w *Watcher) real(p string) string { return filepath.Join(w.root, filepath.FromSlash(p)) }

// maxSymlinks bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinks = 40

// resolveDir resolves the host path p the way the host's kernel would if the
// root were "/" (as the collectors do): an absolute symlink target restarts
// at the root and ".." never climbs above it. It reports whether p is an
// existing directory, and its path without symbolic links.
func (w *Watcher) resolveDir(p string) (string, bool) {
	todo := splitPath(p)
	done := "/"
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			done = path.Dir(done)
			continue
		}
		next := path.Join(done, c)
		fi, err := os.Lstat(w.real(next))
		if err != nil {
			return "", false
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if links++; links > maxSymlinks {
				return "", false
			}
			target, err := os.Readlink(w.real(next))
			if err != nil {
				return "", false
			}
			target = filepath.ToSlash(target)
			if path.IsAbs(target) {
				done = "/"
			}
			todo = append(splitPath(target), todo...)
			continue
		}
		if !fi.IsDir() {
			return "", false
		}
		done = next
	}
	return done, true
}

// splitPath returns the components of p, without empty and "." ones.
func splitPath(p string) []string {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// escapeMeta returns the pattern matching the literal path p only.
func escapeMeta(p string) string {
	if !hasMeta(p) {
		return p
	}
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// match reports whether name matches the path component pattern comp; a
// malformed pattern, which collect.Config.Validate refuses, matches nothing.
func match(comp, name string) bool {
	if !hasMeta(comp) {
		return comp == name
	}
	ok, _ := path.Match(comp, name)
	return ok
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
