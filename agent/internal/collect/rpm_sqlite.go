package collect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	_ "modernc.org/sqlite" // the pure-Go driver "sqlite": the agent is built without cgo
)

// sqliteMagic starts every SQLite 3 database file.
const sqliteMagic = "SQLite format 3\x00"

// readRPMSQLite reads every package header of an rpm SQLite database
// (rpmdb.sqlite: RHEL 9, Fedora 33+, Alma/Rocky 9), whose Packages table
// holds one header blob per installed package, in the format the Berkeley DB
// one holds them.
//
// The database is opened read-only and never written, so that reading does
// not take rpm's place in a transaction. rpm keeps it in WAL mode, and
// SQLite needs the -shm file beside it to read such a database; where it
// cannot create it (a read-only host mount), the database is read as
// immutable, which ignores a transaction rpm may have in progress.
func readRPMSQLite(ctx context.Context, file string) ([]*commonv1.Package, error) {
	if err := checkSQLiteFile(file); err != nil {
		return nil, err
	}
	pkgs, err := querySQLiteRPM(ctx, file, false)
	if err != nil && ctx.Err() == nil {
		if imm, immErr := querySQLiteRPM(ctx, file, true); immErr == nil {
			return imm, nil
		}
	}
	return pkgs, err
}

// checkSQLiteFile refuses anything but a regular file that starts as an
// SQLite database does: SQLite would otherwise create an empty database in
// place of a missing one, or block on a FIFO.
func checkSQLiteFile(file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	magic := make([]byte, len(sqliteMagic))
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != sqliteMagic {
		return errors.New("not an SQLite database")
	}
	return nil
}

// sqliteDSN is the driver's name for file opened read-only, with a busy
// timeout so that a query waits for an rpm transaction to commit.
func sqliteDSN(file string, immutable bool) string {
	q := url.Values{}
	q.Set("mode", "ro")
	if immutable {
		q.Set("immutable", "1")
	}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	return (&url.URL{Scheme: "file", OmitHost: true, Path: file, RawQuery: q.Encode()}).String()
}

func querySQLiteRPM(ctx context.Context, file string, immutable bool) (pkgs []*commonv1.Package, err error) {
	db, err := sql.Open("sqlite", sqliteDSN(file, immutable))
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, "SELECT hnum, blob FROM Packages ORDER BY hnum")
	if err != nil {
		return nil, fmt.Errorf("query Packages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			hnum int64
			blob []byte
		)
		if err := rows.Scan(&hnum, &blob); err != nil {
			return nil, fmt.Errorf("read Packages: %w", err)
		}
		p, err := parseRPMHeader(blob)
		if err != nil {
			return nil, fmt.Errorf("package %d: %w", hnum, err)
		}
		pkgs = append(pkgs, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read Packages: %w", err)
	}
	return pkgs, nil
}

// rpmNewerFormats are the database files of the formats that replaced
// Berkeley DB, in the order the collector looks for them; read is nil for a
// format this build cannot read.
var rpmNewerFormats = []struct {
	file string
	read func(ctx context.Context, file string) ([]*commonv1.Package, error)
}{
	{"rpmdb.sqlite", readRPMSQLite},
	{"Packages.db", readRPMNDB},
}
