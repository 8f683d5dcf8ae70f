package collect

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// maxSymlinks bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinks = 40

// errLoop reports a symlink chain longer than maxSymlinks.
var errLoop = errors.New("too many levels of symbolic links")

// chase resolves the host path p inside the root the way the host's kernel
// would if the root were "/": an absolute symlink target restarts at the root
// and ".." never climbs above it, so no link on the host can lead the agent to
// its own container's files. The result is a clean host path (without the
// root prefix) none of whose directories is a symlink; its last component is
// one only if followLast is false.
//
// With allowMissing, a missing component ends the walk successfully: the rest
// of p is appended lexically and exists is false. Without it, a missing
// component is an error satisfying errors.Is(err, fs.ErrNotExist).
func (h HostFS) chase(p string, followLast, allowMissing bool) (resolved string, exists bool, err error) {
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
		fi, err := os.Lstat(h.Path(next))
		if err != nil {
			if allowMissing && errors.Is(err, fs.ErrNotExist) {
				return path.Join(append([]string{next}, todo...)...), false, nil
			}
			return "", false, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 && (len(todo) > 0 || followLast) {
			links++
			if links > maxSymlinks {
				return "", false, &fs.PathError{Op: "resolve", Path: p, Err: errLoop}
			}
			target, err := os.Readlink(h.Path(next))
			if err != nil {
				return "", false, err
			}
			if path.IsAbs(target) {
				done = "/"
			}
			todo = append(splitPath(target), todo...)
			continue
		}
		if len(todo) > 0 && !fi.IsDir() {
			if allowMissing {
				return path.Join(append([]string{next}, todo...)...), false, nil
			}
			return "", false, &fs.PathError{Op: "resolve", Path: p, Err: fmt.Errorf("%s is not a directory", next)}
		}
		done = next
	}
	return done, true, nil
}

// splitPath returns the components of p, without empty and "." ones.
func splitPath(p string) []string {
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, c := range parts {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// resolve returns where the host path p is found from this process, with
// every symlink in it resolved inside the root.
func (h HostFS) resolve(p string) (string, error) {
	r, _, err := h.chase(p, true, false)
	if err != nil {
		return "", err
	}
	return h.Path(r), nil
}

// open opens the regular host file p for reading. Anything else is refused
// before it is opened: opening a FIFO someone put in place of /etc/passwd
// would block the collection forever.
func (h HostFS) open(p string) (*os.File, error) {
	real, err := h.resolve(p)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("not a regular file")}
	}
	return os.Open(real)
}

// readDir lists the host directory p.
func (h HostFS) readDir(p string) ([]fs.DirEntry, error) {
	real, err := h.resolve(p)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(real)
}

// readFileLimit reads up to limit bytes of the regular host file p; small
// single-value files (hostname, machine-id) need no parser.
func (h HostFS) readFileLimit(p string, limit int64) ([]byte, error) {
	f, err := h.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
