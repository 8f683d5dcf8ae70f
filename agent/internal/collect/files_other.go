//go:build !unix

package collect

import (
	"io/fs"
	"os"
)

// fileOwner has no numeric owner to report outside Unix.
func fileOwner(fs.FileInfo) (uid, gid uint32, ok bool) { return 0, 0, false }

// openNoFollow opens a file for reading; the checks after opening guard
// against a swapped file where the open flags cannot.
func openNoFollow(name string) (*os.File, error) { return os.Open(name) }
