//go:build windows || plan9 || solaris || aix || android

package spool

import "os"

// unlockFile is a no-op here: on Windows closing the handle releases the
// byte-range lock bbolt took, and on the other systems bbolt's lock (fcntl,
// or none) is released by closing the descriptor.
func unlockFile(*os.File) {}
