package collect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"os"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// The NDB format (Packages.db, SUSE 15.3+), from rpm's
// lib/backend/ndb/rpmpkg.c. All numbers are little-endian uint32s.
//
//   - A 32-byte file header: magic "RpmP", version 0, generation, the number
//     of 4 KiB slot pages, the next package index, and reserved words.
//   - The slot pages (the header takes the first two 16-byte slots of the
//     first page): each slot is magic "Slot", package index (0 when free),
//     block offset and block count, in 16-byte blocks.
//   - At each used slot's block, a blob: magic "BlbS", package index,
//     generation, length; the header blob itself; then, padded to the end of
//     the blocks, a tail: Adler-32 of blob head and blob, length, magic "BlbE".
const (
	ndbHeaderMagic = 'R' | 'p'<<8 | 'm'<<16 | 'P'<<24
	ndbSlotMagic   = 'S' | 'l'<<8 | 'o'<<16 | 't'<<24
	ndbBlobMagic   = 'B' | 'l'<<8 | 'b'<<16 | 'S'<<24
	ndbTailMagic   = 'B' | 'l'<<8 | 'b'<<16 | 'E'<<24

	ndbPageSize  = 4096
	ndbSlotSize  = 16
	ndbBlockSize = 16
	ndbBlobHead  = 16
	ndbBlobTail  = 12
	// ndbMaxSlotPages bounds the slot table read: 2048 pages are half a
	// million packages.
	ndbMaxSlotPages = 2048
)

// readRPMNDB reads every package header of an rpm NDB database, checking
// each blob's framing and checksum as rpm does, so that a blob rpm is
// rewriting meanwhile (the file is read without rpm's lock) is an error
// rather than a wrong package.
func readRPMNDB(ctx context.Context, file string) ([]*commonv1.Package, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return parseRPMNDB(ctx, f, fi.Size())
}

// parseRPMNDB reads the NDB database of size bytes in r.
func parseRPMNDB(ctx context.Context, r io.ReaderAt, size int64) ([]*commonv1.Package, error) {
	le := binary.LittleEndian
	head := make([]byte, 32)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("ndb header: %w", err)
	}
	if le.Uint32(head[0:]) != ndbHeaderMagic {
		return nil, errors.New("ndb header: bad magic")
	}
	if v := le.Uint32(head[4:]); v != 0 {
		return nil, fmt.Errorf("ndb header: version %d unsupported", v)
	}
	npages := le.Uint32(head[12:])
	if npages == 0 || npages > ndbMaxSlotPages || int64(npages)*ndbPageSize > size {
		return nil, fmt.Errorf("ndb header: %d slot pages in %d bytes", npages, size)
	}
	slots := make([]byte, int64(npages)*ndbPageSize)
	if _, err := r.ReadAt(slots, 0); err != nil {
		return nil, fmt.Errorf("ndb slots: %w", err)
	}
	var pkgs []*commonv1.Package
	for off := 2 * ndbSlotSize; off < len(slots); off += ndbSlotSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s := slots[off : off+ndbSlotSize]
		if le.Uint32(s[0:]) != ndbSlotMagic {
			return nil, fmt.Errorf("ndb slot %d: bad magic", off/ndbSlotSize)
		}
		idx, blkoff, blkcnt := le.Uint32(s[4:]), le.Uint32(s[8:]), le.Uint32(s[12:])
		if idx == 0 {
			continue
		}
		blob, err := readNDBBlob(r, size, idx, blkoff, blkcnt)
		if err != nil {
			return nil, fmt.Errorf("ndb package %d: %w", idx, err)
		}
		p, err := parseRPMHeader(blob)
		if err != nil {
			return nil, fmt.Errorf("ndb package %d: %w", idx, err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// readNDBBlob reads and checks the blob of package idx in blkcnt blocks at
// block blkoff.
func readNDBBlob(r io.ReaderAt, size int64, idx, blkoff, blkcnt uint32) ([]byte, error) {
	le := binary.LittleEndian
	start, n := int64(blkoff)*ndbBlockSize, int64(blkcnt)*ndbBlockSize
	if blkoff == 0 || n < ndbBlobHead+ndbBlobTail || start+n > size || n > rpmMaxHeader+ndbBlockSize*2 {
		return nil, fmt.Errorf("blocks %d+%d outside the %d-byte file", blkoff, blkcnt, size)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, start); err != nil {
		return nil, err
	}
	if le.Uint32(b[0:]) != ndbBlobMagic {
		return nil, errors.New("bad blob magic")
	}
	if got := le.Uint32(b[4:]); got != idx {
		return nil, fmt.Errorf("blob of package %d in its slot", got)
	}
	bloblen := int64(le.Uint32(b[12:]))
	// The blob fills its blocks: its end, rounded up, is theirs.
	if want := (ndbBlobHead + bloblen + ndbBlobTail + ndbBlockSize - 1) / ndbBlockSize; want != int64(blkcnt) {
		return nil, fmt.Errorf("blob of %d bytes in %d blocks", bloblen, blkcnt)
	}
	tail := b[n-ndbBlobTail:]
	if le.Uint32(tail[8:]) != ndbTailMagic || int64(le.Uint32(tail[4:])) != bloblen {
		return nil, errors.New("bad blob tail")
	}
	// The checksum covers the head, the blob and the padding before the tail.
	if adler32.Checksum(b[:n-ndbBlobTail]) != le.Uint32(tail[0:]) {
		return nil, errors.New("blob checksum mismatch")
	}
	return b[ndbBlobHead : ndbBlobHead+bloblen], nil
}
