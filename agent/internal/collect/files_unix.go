//go:build unix

package collect

import (
	"io/fs"
	"os"
	"syscall"
)

// fileOwner returns the numeric owner of a file from its stat data.
func fileOwner(fi fs.FileInfo) (uid, gid uint32, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return st.Uid, st.Gid, true
}

// openNoFollow opens a file for reading without following a final symlink
// and without blocking, so a FIFO put in place of a checked regular file
// cannot hang the collection.
func openNoFollow(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
}
