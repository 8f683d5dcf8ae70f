package api

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

// handleBackup serves POST /api/v1/admin/backup: a consistent snapshot of
// the embedded store, taken while the server runs. The snapshot is written
// to a temporary file first, so a slow client never holds the store's
// read transaction open (which would stall writes that grow the file).
func (s *server) handleBackup(w http.ResponseWriter, r *http.Request) error {
	if s.backup == nil {
		return errorf(http.StatusNotImplemented, "not_implemented",
			"this server's store has no built-in backup; for PostgreSQL use pg_dump or point-in-time recovery")
	}
	tmp, err := os.CreateTemp(s.backupDir, "qinfra-backup-*.db")
	if err != nil {
		return fmt.Errorf("backup: temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := s.backup(tmp)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := s.audit(r, "store.backup", "store", map[string]any{"bytes": n}); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="qinfra-%s.db"`, s.now().UTC().Format("20060102T150405Z")))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, tmp); err != nil {
		// Headers are out; all that is left is to log it.
		s.log.Error("backup: send", "err", err)
	}
	return nil
}
