package osv

import (
	"context"
	"time"
)

// Stored tells Import which records are already stored, so that a
// re-import only passes on what changed.
type Stored interface {
	// Modified returns the modified time of the stored record with this id,
	// and whether there is one.
	Modified(id string) (time.Time, bool)
}

// Report counts what an import did.
type Report struct {
	Files     int // files read, valid or not
	Added     int // records new to the store
	Updated   int // records newer than the stored ones
	Unchanged int // records not newer than the stored ones, skipped
	Withdrawn int // of Added and Updated, records that are withdrawn
	// Invalid lists the files that are not valid records, with the reason.
	Invalid []*FileError
}

// Import scans path (see Scan) and calls put for every valid record that
// is not stored yet or whose modified time is later than the stored one's;
// records not newer are skipped. Withdrawn records are passed to put like
// any other, so that the store can retract them. When the same id occurs
// more than once in the source, the latest modified wins. Invalid files
// are listed in the report and the rest is imported. Import stops at the
// first error put returns, when ctx is done, or when path cannot be read.
func Import(ctx context.Context, path string, stored Stored, put func(*Record) error) (Report, error) {
	var rep Report
	seen := map[string]time.Time{} // ids put during this import
	err := Scan(ctx, path, func(e Entry) error {
		rep.Files++
		if e.Err != nil {
			rep.Invalid = append(rep.Invalid, &FileError{Path: e.Path, Err: e.Err})
			return nil
		}
		rec := e.Record
		prev, known := seen[rec.ID]
		if !known && stored != nil {
			prev, known = stored.Modified(rec.ID)
		}
		if known && !rec.Modified.After(prev) {
			rep.Unchanged++
			return nil
		}
		if err := put(rec); err != nil {
			return err
		}
		seen[rec.ID] = rec.Modified
		if known {
			rep.Updated++
		} else {
			rep.Added++
		}
		if rec.IsWithdrawn() {
			rep.Withdrawn++
		}
		return nil
	})
	return rep, err
}
