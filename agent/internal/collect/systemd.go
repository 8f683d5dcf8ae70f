package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// systemdCollector reports .service, .socket and .timer unit files with the
// state `systemctl list-unit-files --root=ROOT` gives them. It reimplements
// systemd's install logic (src/shared/install.c) on files alone, since in a
// container or with Root != "/" there is no systemd to ask. Active states
// need the running manager and are left empty.
//
// The states match systemctl 252 (Debian 12, RHEL 9), which the tests
// compare against, except that UpheldBy= and .upholds/ links, which 252
// ignores and later versions count, are counted.
type systemdCollector struct{}

func (systemdCollector) Name() string { return "systemd" }

// unitSearchPaths is the system unit search path of systemd, in its order of
// precedence. /lib/systemd/system precedes /usr/lib/systemd/system as in
// Debian's split-usr build; where /lib is a link to /usr/lib they are one
// directory and the order does not matter.
func unitSearchPaths() []string {
	return []string{
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
}

// reportedUnitType reports whether units of this name become inventory
// items: services, and the sockets and timers that start them.
func reportedUnitType(name string) bool {
	switch unitType(name) {
	case "service", "socket", "timer":
		return true
	}
	return false
}

func (systemdCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	l, err := newUnitLookup(h)
	if err != nil {
		return nil, err
	}
	units, err := l.listUnitFiles(ctx)
	if err != nil {
		return nil, err
	}
	var items []*commonv1.Item
	for _, u := range units {
		if !reportedUnitType(u.GetName()) {
			continue
		}
		it, err := sealed(inventory.KindService, u.GetName(), u)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// unitDir is a directory of the search path: the path systemd names it by
// and where it really is inside the root.
type unitDir struct {
	name, real string
}

// dirEntry is a cached directory entry; target is the symlink's target.
type dirEntry struct {
	name          string
	isDir, isLink bool
	isRegular     bool
	target        string
}

// unitLookup holds the search path and a cache of the directories read, for
// one collection: computing each unit's state scans every search directory,
// and the cache turns that into one read per directory.
type unitLookup struct {
	h    HostFS
	dirs []unitDir
	ls   map[string][]dirEntry
}

func newUnitLookup(h HostFS) (*unitLookup, error) {
	l := &unitLookup{h: h, ls: map[string][]dirEntry{}}
	var kept []os.FileInfo
	for _, p := range unitSearchPaths() {
		real, exists, err := h.chase(p, true, true)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", p, err)
		}
		if !exists {
			continue
		}
		fi, err := os.Stat(h.Path(real))
		if err != nil || !fi.IsDir() {
			continue
		}
		// Two names for one directory (/lib → /usr/lib) are searched once.
		if slices.ContainsFunc(kept, func(k os.FileInfo) bool { return os.SameFile(k, fi) }) {
			continue
		}
		kept = append(kept, fi)
		l.dirs = append(l.dirs, unitDir{name: p, real: real})
	}
	return l, nil
}

// list returns the entries of the host directory dir (a resolved path),
// reading each directory once.
func (l *unitLookup) list(dir string) []dirEntry {
	if es, ok := l.ls[dir]; ok {
		return es
	}
	var out []dirEntry
	des, _ := os.ReadDir(l.h.Path(dir))
	for _, de := range des {
		e := dirEntry{name: de.Name(), isDir: de.IsDir(), isLink: de.Type()&fs.ModeSymlink != 0, isRegular: de.Type().IsRegular()}
		if e.isLink {
			e.target, _ = os.Readlink(l.h.Path(path.Join(dir, de.Name())))
		}
		out = append(out, e)
	}
	l.ls[dir] = out
	return out
}

// listUnitFiles returns every unit file of the search path with its state,
// the first of each name winning, as systemctl list-unit-files does.
func (l *unitLookup) listUnitFiles(ctx context.Context) ([]*commonv1.Service, error) {
	seen := map[string]bool{}
	var out []*commonv1.Service
	for _, d := range l.dirs {
		for _, e := range l.list(d.real) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if !unitNameIs(e.name, nameAny) || seen[e.name] || !(e.isLink || e.isRegular) {
				continue
			}
			seen[e.name] = true
			svc := &commonv1.Service{Manager: "systemd", Name: e.name, Path: path.Join(d.name, e.name)}
			state, info, err := l.lookupState(e.name)
			if err != nil {
				state = "bad"
			} else if info.mode == modeRegular {
				svc.Description = info.file.description
			}
			svc.UnitFileState = state
			out = append(out, svc)
		}
	}
	return out, nil
}

// installMode is how a name was found, as systemd's InstallMode.
type installMode int

const (
	modeUnknown installMode = iota
	modeRegular
	modeLinked
	modeAlias
	modeMasked
)

// installInfo is systemd's InstallInfo: a unit name, where it was found and
// what its file says.
type installInfo struct {
	name          string
	path          string
	mode          installMode
	symlinkTarget string
	file          unitFile
}

// Errors that make systemctl report a unit as "bad".
var (
	errUnitNotFound = errors.New("unit not found")
	errUnitLoop     = errors.New("unit symlink loop")
	errUnitXDev     = errors.New("unit symlink target does not match")
	errUnitInvalid  = errors.New("invalid unit")
	errUnitNoLink   = errors.New("unit symlink target not found")
)

// unitFollowMax bounds alias chains, as systemd's UNIT_FILE_FOLLOW_SYMLINK_MAX.
const unitFollowMax = 64

// lookupState is systemd's unit_file_lookup_state.
func (l *unitLookup) lookupState(name string) (string, *installInfo, error) {
	infos := map[string]*installInfo{}
	info := &installInfo{name: name}
	infos[name] = info
	if err := l.search(info); err != nil {
		return "", nil, err
	}
	// Follow aliases and links to the unit file they name.
	for k := 0; info.mode == modeAlias || info.mode == modeLinked; k++ {
		if k >= unitFollowMax {
			return "", nil, errUnitLoop
		}
		if info.mode == modeLinked || path.Base(info.symlinkTarget) == info.name {
			if err := l.follow(info); err != nil {
				return "", nil, err
			}
			continue
		}
		bn := path.Base(info.symlinkTarget)
		if unitNameIs(info.name, nameInstance) && unitNameIs(bn, nameTemplate) {
			inst, _ := unitReplaceInstance(bn, unitInstance(info.name))
			if inst == info.name {
				// An instance linked to its own template: the template's file
				// is the instance's.
				if err := l.follow(info); err != nil {
					return "", nil, err
				}
				continue
			}
			bn = inst
		}
		next, ok := infos[bn]
		if !ok {
			next = &installInfo{name: bn}
			infos[bn] = next
		}
		info = next
		if info.mode == modeUnknown {
			if err := l.search(info); err != nil {
				if errors.Is(err, errUnitNotFound) {
					return "", nil, errUnitNoLink
				}
				return "", nil, err
			}
		}
	}

	if info.mode == modeMasked {
		if l.isRuntime(info.path) {
			return "masked-runtime", info, nil
		}
		return "masked", info, nil
	}
	if name != path.Base(info.path) && !unitNameIs(info.name, nameInstance) {
		return "alias", info, nil
	}
	switch parent := path.Dir(info.path); {
	case l.dirNamed(parent, "/run/systemd/generator", "/run/systemd/generator.early", "/run/systemd/generator.late"):
		return "generated", info, nil
	case l.dirNamed(parent, "/run/systemd/transient"):
		return "transient", info, nil
	}
	if state, ok := l.findSymlinksInScope(info, true); ok {
		return state, info, nil
	}
	if _, ok := l.findSymlinksInScope(info, false); ok {
		return "indirect", info, nil
	}
	switch {
	case info.file.hasRules():
		return "disabled", info, nil
	case len(info.file.also) > 0:
		return "indirect", info, nil
	default:
		return "static", info, nil
	}
}

// dirNamed reports whether the resolved directory dir is one of the named
// search directories.
func (l *unitLookup) dirNamed(dir string, names ...string) bool {
	for _, d := range l.dirs {
		if d.real == dir && slices.Contains(names, d.name) {
			return true
		}
	}
	return false
}

// isRuntime reports whether the file or directory p is runtime state, lost
// at reboot: anything under /run.
func (l *unitLookup) isRuntime(p string) bool {
	if hasPathPrefix(p, "/run") {
		return true
	}
	for _, d := range l.dirs {
		if (d.real == p || d.real == path.Dir(p)) && hasPathPrefix(d.name, "/run") {
			return true
		}
	}
	return false
}

// search is systemd's unit_file_search: find the unit's file in the search
// path (for an instance, its template's if it has none of its own), then its
// drop-ins.
func (l *unitLookup) search(info *installInfo) error {
	found := false
	names := []string{info.name}
	if t, ok := unitTemplate(info.name); ok && t != info.name {
		names = append(names, t)
	}
	for _, n := range names {
		for _, d := range l.dirs {
			p := path.Join(d.real, n)
			err := l.loadOrReadlink(info, p)
			if err == nil {
				info.path = p
				found = true
				break
			}
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
				return err
			}
		}
		if found {
			break
		}
	}
	if !found {
		return errUnitNotFound
	}
	if info.mode == modeMasked {
		return nil
	}
	return l.loadDropins(info, names)
}

// loadDropins parses the [Install] sections of NAME.d/*.conf (and the
// template's) into info. Of drop-ins with the same file name the one earliest
// in the search path wins; they apply in file name order.
func (l *unitLookup) loadDropins(info *installInfo, names []string) error {
	chosen := map[string]string{}
	for _, n := range names {
		for _, d := range l.dirs {
			dir := path.Join(d.real, n+".d")
			for _, e := range l.list(dir) {
				if !strings.HasSuffix(e.name, ".conf") || strings.HasPrefix(e.name, ".") || e.isDir {
					continue
				}
				if _, ok := chosen[e.name]; !ok {
					chosen[e.name] = path.Join(dir, e.name)
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(chosen)) {
		// A drop-in linked to /dev/null masks the same name in later
		// directories; under a root, /dev/null need not exist.
		resolved, exists, err := l.h.chase(chosen[name], true, true)
		if err != nil {
			return err
		}
		if resolved == "/dev/null" {
			continue
		}
		if !exists {
			return fmt.Errorf("%s: %w", chosen[name], fs.ErrNotExist)
		}
		real := l.h.Path(resolved)
		fi, err := os.Stat(real)
		if err != nil {
			return err
		}
		if isNullOrEmpty(fi) {
			continue
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: %w", chosen[name], errUnitInvalid)
		}
		if err := l.parseInto(real, info); err != nil {
			return err
		}
	}
	return nil
}

func (l *unitLookup) parseInto(real string, info *installInfo) error {
	f, err := os.Open(real)
	if err != nil {
		return err
	}
	defer f.Close()
	return parseUnitFile(f, &info.file, info.name)
}

// isNullOrEmpty is systemd's null_or_empty: an empty file or a device node
// such as /dev/null masks a unit.
func isNullOrEmpty(fi os.FileInfo) bool {
	return fi.Mode().IsRegular() && fi.Size() == 0 || fi.Mode()&fs.ModeCharDevice != 0
}

// follow is systemd's install_info_follow: continue at the symlink target,
// keeping the name.
func (l *unitLookup) follow(info *installInfo) error {
	info.path = info.symlinkTarget
	info.mode = modeUnknown
	return l.loadOrReadlink(info, info.path)
}

// loadOrReadlink is systemd's unit_file_load_or_readlink: load the file at
// the resolved host path p for info, or if it is a symlink, classify it as a
// mask, an alias (target inside the search path) or a linked unit file.
func (l *unitLookup) loadOrReadlink(info *installInfo, p string) error {
	t := unitType(info.name)
	if !isUnitType(t) || unitNameIs(info.name, nameInstance|nameTemplate) && !unitTypeMayTemplate(t) {
		return errUnitInvalid
	}
	fi, err := os.Lstat(l.h.Path(p))
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, linked, err := l.resolveSymlink(p)
		if err != nil {
			return err
		}
		info.symlinkTarget = target
		masked, err := l.nullOrEmpty(target)
		switch {
		case err != nil:
			return err
		case masked:
			info.mode = modeMasked
		case linked:
			info.mode = modeLinked
		default:
			info.mode = modeAlias
		}
		return nil
	case isNullOrEmpty(fi):
		info.mode = modeMasked
		return nil
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: %w", p, errUnitInvalid)
	}
	if err := l.parseInto(l.h.Path(p), info); err != nil {
		return err
	}
	info.mode = modeRegular
	return nil
}

// nullOrEmpty is systemd's null_or_empty_path_with_root: does the resolved
// host path p mask a unit? /dev/null itself need not exist under the root.
func (l *unitLookup) nullOrEmpty(p string) (bool, error) {
	if p == "/dev/null" {
		return true, nil
	}
	real, err := l.h.resolve(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return false, err
	}
	return isNullOrEmpty(fi), nil
}

// resolveSymlink is systemd's unit_file_resolve_symlink: the target of the
// symlink at host path p with its directories resolved inside the root, and
// whether it is a linked unit file (outside the search path) rather than an
// alias, which must name a compatible unit.
func (l *unitLookup) resolveSymlink(p string) (target string, linked bool, err error) {
	dest, err := os.Readlink(l.h.Path(p))
	if err != nil {
		return "", false, err
	}
	if !path.IsAbs(dest) {
		dest = path.Join(path.Dir(p), dest)
	}
	target, _, err = l.h.chase(dest, false, true)
	if err != nil {
		return "", false, err
	}
	for _, d := range l.dirs {
		if hasPathPrefix(target, d.real) && target != d.real {
			return target, false, validateAlias(path.Base(p), path.Base(target))
		}
	}
	return target, true, nil
}

// findSymlinksInScope is systemd's find_symlinks_in_scope: look for symlinks
// that enable the unit in each search directory. With matchName only the
// names enabling the unit would create count; without, any symlink to it.
func (l *unitLookup) findSymlinksInScope(info *installInfo, matchName bool) (string, bool) {
	var enabledRuntime, enabledAtAll, sameNameConfig, sameNameRuntime, ignoreSameName bool
	for _, d := range l.dirs {
		found, sameName := l.findSymlinks(d.real, info, matchName, ignoreSameName)
		switch {
		case found && d.name == "/etc/systemd/system":
			return "enabled", true
		case found && l.isRuntime(d.real):
			enabledRuntime = true
		case found:
			enabledAtAll = true
		case sameName && d.name == "/etc/systemd/system":
			sameNameConfig = true
		case sameName && l.isRuntime(d.real):
			sameNameRuntime = true
		}
		// Directories after the one holding the unit file have lower
		// precedence: a file of the same name there is shadowed, not a link.
		if !ignoreSameName && hasPathPrefix(info.path, d.real) {
			ignoreSameName = true
		}
	}
	switch {
	case enabledRuntime:
		return "enabled-runtime", true
	case enabledAtAll && unitNameIs(info.name, nameInstance):
		// An instance linked from a vendor directory is enabled statically.
		return "static", true
	case sameNameConfig:
		return "linked", true
	case sameNameRuntime:
		return "linked-runtime", true
	}
	return "", false
}

// findSymlinks is systemd's find_symlinks for one search directory: its
// .wants/, .requires/ and .upholds/ subdirectories by symlink name, then the
// directory itself by symlink target.
func (l *unitLookup) findSymlinks(dir string, info *installInfo, matchName, ignoreSameName bool) (found, sameName bool) {
	for _, e := range l.list(dir) {
		if !e.isDir {
			continue
		}
		switch unitType(e.name) {
		case "wants", "requires", "upholds":
		default:
			continue
		}
		sub := path.Join(dir, e.name)
		if f, _ := l.findSymlinksInDir(sub, dir, info, true, matchName, ignoreSameName); f {
			return true, false
		}
	}
	return l.findSymlinksInDir(dir, dir, info, false, matchName, ignoreSameName)
}

// findSymlinksInDir is systemd's find_symlinks_in_directory.
func (l *unitLookup) findSymlinksInDir(dir, configDir string, info *installInfo, ignoreDest, matchName, ignoreSameName bool) (found, sameName bool) {
	for _, e := range l.list(dir) {
		if !e.isLink {
			continue
		}
		var foundPath, foundDest bool
		if !ignoreDest {
			if e.target == "" {
				continue
			}
			foundDest = path.Base(e.target) == info.name
		}
		if ignoreDest || !ignoreSameName {
			foundPath = e.name == info.name
		}
		if !foundPath && ignoreDest {
			if t, ok := unitTemplate(e.name); ok {
				foundDest = t == info.name
			}
		}
		if foundPath && foundDest && dir == configDir {
			sameName = true
			continue
		}
		if foundPath || foundDest {
			if !matchName || knownSymlinkName(info, e.name) {
				return true, sameName
			}
		}
	}
	return false, sameName
}

// knownSymlinkName is systemd's is_symlink_with_known_name: would enabling
// the unit create a symlink of this name?
func knownSymlinkName(info *installInfo, name string) bool {
	if name == info.name || slices.Contains(info.file.aliases, name) {
		return true
	}
	if info.file.defaultInstance != "" && unitNameIs(info.name, nameTemplate) {
		if s, ok := unitReplaceInstance(info.name, info.file.defaultInstance); ok && s == name {
			return true
		}
	}
	return false
}
