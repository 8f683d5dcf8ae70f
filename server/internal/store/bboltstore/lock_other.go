//go:build !unix

package bboltstore

import "os"

// lockFile does nothing where bbolt's lock is not flock(2): Restore then
// relies on the server being stopped, as documented.
func lockFile(*os.File) error { return nil }
