//go:build unix

package bboltstore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes the exclusive lock bbolt takes on a store file, failing
// with ErrLocked at once if another open file holds it. Closing f
// releases it.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("%w (is a qinfra-server using it? stop it first)", ErrLocked)
	}
	return err
}
