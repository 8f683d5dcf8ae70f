package osv

import (
	"archive/zip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// An Entry is one file of an OSV source: a valid record, or the reason
// the file is not one.
type Entry struct {
	// Path names the file: its path, or "archive.zip!member.json" for a
	// member of a zip archive.
	Path   string
	Record *Record
	Err    error
}

// FileError is a file that is not a valid record, and why.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Scan reads the OSV records at path, which is a directory (searched
// recursively for .json files and .zip archives), a .zip archive such as
// OSV publishes per ecosystem (all.zip), or a single .json file. It calls
// fn for each file in lexical order, one at a time, holding only that file
// in memory; a file that is not a valid record is passed to fn with Err
// set and does not stop the scan. Scan stops at the first error fn returns,
// when ctx is done, or when path cannot be read, and returns that error.
func Scan(ctx context.Context, path string, fn func(Entry) error) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("osv source: %w", err)
	}
	if !info.IsDir() {
		return scanFile(ctx, path, fn)
	}
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == path {
				return fmt.Errorf("osv source: %w", err)
			}
			// An unreadable file or folder inside the tree is reported
			// like an invalid record, and the walk goes on.
			return fn(Entry{Path: p, Err: err})
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !isJSON(p) && !isZip(p) {
			return nil
		}
		if !d.Type().IsRegular() {
			// Follow a symbolic link to a file, as a mirror may use them.
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		}
		return scanFile(ctx, p, fn)
	})
}

func isJSON(p string) bool { return strings.EqualFold(filepath.Ext(p), ".json") }
func isZip(p string) bool  { return strings.EqualFold(filepath.Ext(p), ".zip") }

func scanFile(ctx context.Context, p string, fn func(Entry) error) error {
	if isZip(p) {
		return scanZip(ctx, p, fn)
	}
	f, err := os.Open(p)
	if err != nil {
		return fn(Entry{Path: p, Err: err})
	}
	rec, err := Parse(f)
	f.Close()
	return fn(Entry{Path: p, Record: rec, Err: err})
}

func scanZip(ctx context.Context, p string, fn func(Entry) error) error {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return fn(Entry{Path: p, Err: fmt.Errorf("open zip: %w", err)})
	}
	defer zr.Close()
	for _, zf := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		if zf.FileInfo().IsDir() || !isJSON(zf.Name) {
			continue
		}
		name := p + "!" + zf.Name
		if zf.UncompressedSize64 > MaxRecordSize {
			if err := fn(Entry{Path: name, Err: ErrTooLarge}); err != nil {
				return err
			}
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			if err := fn(Entry{Path: name, Err: err}); err != nil {
				return err
			}
			continue
		}
		rec, err := Parse(rc)
		if cerr := rc.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err := fn(Entry{Path: name, Record: rec, Err: err}); err != nil {
			return err
		}
	}
	return nil
}
