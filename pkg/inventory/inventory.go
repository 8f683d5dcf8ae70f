// Package inventory holds the rules both agent and server follow for
// inventory items: how an item's hash and a whole set's hash are computed,
// and how two sets are diffed into a delta.
//
// The wire types live in proto/gen/qinfra/common/v1; this package adds the
// behaviour that must be identical on both ends of the stream.
package inventory

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

// Kinds of inventory items.
const (
	KindPackage = "package"
	KindFile    = "file"
	KindUser    = "user"
	KindGroup   = "group"
	KindService = "service"
	KindOS      = "os"
	KindPort    = "port"
	KindProcess = "process"
	// KindExt is the kind of every item a plugin reports: the plugin's own
	// kind is in its Extension body, and its key is "<plugin>:<kind>:<key>".
	KindExt = "ext"
)

// Kinds lists every kind, in the order they are reported.
var Kinds = []string{KindOS, KindPackage, KindUser, KindGroup, KindService, KindFile, KindPort, KindProcess, KindExt}

// PackageManagers are the package managers agents report. A package item
// is keyed "<manager>:<name>:<arch>", optionally followed by more
// ":"-separated parts (rpm installs several versions of a kernel) or a
// "#n" suffix for a duplicate; Validate holds items to that, so that the
// server can find every package of a name with a few key-prefix reads.
var PackageManagers = []string{"apk", "dpkg", "rpm", "windows"}

// Ref identifies an item within a host's inventory.
type Ref struct {
	Kind string
	Key  string
}

func (r Ref) String() string { return r.Kind + "/" + r.Key }

// RefOf returns the reference of an item.
func RefOf(it *commonv1.Item) Ref { return Ref{Kind: it.GetKind(), Key: it.GetKey()} }

// Seal computes and sets the item's hash from its body. It must be called
// after the body is final; the agent seals every item it collects.
func Seal(it *commonv1.Item) error {
	body := proto.Clone(it).(*commonv1.Item)
	body.Kind, body.Key, body.Hash = "", "", nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return fmt.Errorf("seal %s/%s: %w", it.GetKind(), it.GetKey(), err)
	}
	sum := sha256.Sum256(b)
	it.Hash = sum[:]
	return nil
}

// Set is a host's inventory reduced to what set comparison needs: each
// item's hash by reference.
type Set map[Ref][]byte

// SetOf builds a Set from items.
func SetOf(items []*commonv1.Item) Set {
	s := make(Set, len(items))
	for _, it := range items {
		s[RefOf(it)] = it.GetHash()
	}
	return s
}

// Hash returns the set hash: see Accumulator.
func (s Set) Hash() []byte {
	var a Accumulator
	for r, h := range s {
		a.Add(r, h)
	}
	return a.Sum()
}

// Accumulator computes a set hash incrementally: the sum modulo 2^256 of
// SHA-256(len-prefixed kind, key, item hash) over all items, with the item
// count. Adding and removing an item costs O(1), so the server checks a
// delta against the agent's set hash without reading the host's whole
// inventory. The sum is not collision-resistant against a party choosing
// items adversarially, which is acceptable here: it detects lost, repeated
// and misapplied deltas, and the only party that chooses a host's items is
// that host's own agent.
type Accumulator struct {
	Acc   [32]byte
	Count uint64
}

func elementDigest(r Ref, itemHash []byte) [32]byte {
	h := sha256.New()
	var lenbuf [4]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint32(lenbuf[:], uint32(len(b)))
		h.Write(lenbuf[:])
		h.Write(b)
	}
	put([]byte(r.Kind))
	put([]byte(r.Key))
	put(itemHash)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Add adds one item.
func (a *Accumulator) Add(r Ref, itemHash []byte) {
	d := elementDigest(r, itemHash)
	var carry uint16
	for i := 31; i >= 0; i-- {
		v := uint16(a.Acc[i]) + uint16(d[i]) + carry
		a.Acc[i] = byte(v)
		carry = v >> 8
	}
	a.Count++
}

// Remove removes one item previously added.
func (a *Accumulator) Remove(r Ref, itemHash []byte) {
	d := elementDigest(r, itemHash)
	var borrow int16
	for i := 31; i >= 0; i-- {
		v := int16(a.Acc[i]) - int16(d[i]) - borrow
		if v < 0 {
			v += 256
			borrow = 1
		} else {
			borrow = 0
		}
		a.Acc[i] = byte(v)
	}
	a.Count--
}

// Sum returns the set hash.
func (a *Accumulator) Sum() []byte {
	h := sha256.New()
	h.Write([]byte("qinfra/set/v1\x00"))
	h.Write(a.Acc[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], a.Count)
	h.Write(n[:])
	return h.Sum(nil)
}

// Delta is the difference from one item set to another.
type Delta struct {
	Upserts []*commonv1.Item
	Removed []Ref
}

// Empty reports whether the delta changes nothing.
func (d Delta) Empty() bool { return len(d.Upserts) == 0 && len(d.Removed) == 0 }

// Diff returns the delta that turns prev into the set of items cur.
func Diff(prev Set, cur []*commonv1.Item) Delta {
	var d Delta
	seen := make(map[Ref]struct{}, len(cur))
	for _, it := range cur {
		r := RefOf(it)
		seen[r] = struct{}{}
		if old, ok := prev[r]; !ok || !bytes.Equal(old, it.GetHash()) {
			d.Upserts = append(d.Upserts, it)
		}
	}
	for r := range prev {
		if _, ok := seen[r]; !ok {
			d.Removed = append(d.Removed, r)
		}
	}
	sort.Slice(d.Removed, func(i, j int) bool {
		if d.Removed[i].Kind != d.Removed[j].Kind {
			return d.Removed[i].Kind < d.Removed[j].Kind
		}
		return d.Removed[i].Key < d.Removed[j].Key
	})
	return d
}

// Apply applies a delta to the set in place.
func (s Set) Apply(upserts []*commonv1.Item, removed []Ref) {
	for _, r := range removed {
		delete(s, r)
	}
	for _, it := range upserts {
		s[RefOf(it)] = it.GetHash()
	}
}

// Validate checks that an item is well formed: a known kind, a key, a
// 32-byte hash, and a body of the kind it claims.
func Validate(it *commonv1.Item) error {
	if it.GetKey() == "" {
		return fmt.Errorf("item of kind %q has an empty key", it.GetKind())
	}
	if len(it.GetKey()) > 4096 {
		return fmt.Errorf("item %s: key longer than 4096 bytes", it.GetKind())
	}
	if len(it.GetHash()) != sha256.Size {
		return fmt.Errorf("item %s/%s: hash is %d bytes, want %d", it.GetKind(), it.GetKey(), len(it.GetHash()), sha256.Size)
	}
	var ok bool
	switch it.GetKind() {
	case KindPackage:
		ok = it.GetPackage() != nil
		if ok {
			if err := validatePackageKey(it.GetKey(), it.GetPackage()); err != nil {
				return fmt.Errorf("item %s/%s: %w", it.GetKind(), it.GetKey(), err)
			}
		}
	case KindFile:
		ok = it.GetFile() != nil
	case KindUser:
		ok = it.GetUser() != nil
	case KindGroup:
		ok = it.GetGroup() != nil
	case KindService:
		ok = it.GetService() != nil
	case KindOS:
		ok = it.GetOs() != nil
	case KindPort:
		ok = it.GetPort() != nil
	case KindProcess:
		ok = it.GetProcess() != nil
	case KindExt:
		ok = it.GetExtension() != nil
		if ok {
			if err := validateExtension(it.GetKey(), it.GetExtension()); err != nil {
				return fmt.Errorf("item %s/%s: %w", it.GetKind(), it.GetKey(), err)
			}
		}
	default:
		return fmt.Errorf("item %q: unknown kind %q", it.GetKey(), it.GetKind())
	}
	if !ok {
		return fmt.Errorf("item %s/%s: body does not match its kind", it.GetKind(), it.GetKey())
	}
	return nil
}

// validatePackageKey checks that a package's key starts with
// "<manager>:<name>:" for a known manager (the body's, when it names one).
func validatePackageKey(key string, p *commonv1.Package) error {
	m, rest, _ := strings.Cut(key, ":")
	if !slices.Contains(PackageManagers, m) {
		return fmt.Errorf("package key does not start with a known manager (%s)", strings.Join(PackageManagers, ", "))
	}
	if p.GetManager() != "" && p.GetManager() != m {
		return fmt.Errorf("package key names manager %q, the package %q", m, p.GetManager())
	}
	if p.GetName() == "" || !strings.HasPrefix(rest, p.GetName()+":") {
		return fmt.Errorf("package key is not %q followed by the architecture", m+":"+p.GetName())
	}
	return nil
}

// ValidExtensionName reports whether s may name a plugin or an extension
// kind: 1 to 63 lower-case ASCII letters, digits, '-' and '_', starting with
// a letter or digit.
func ValidExtensionName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validateExtension checks a plugin's item: valid plugin and kind names and
// a key that is exactly "<plugin>:<kind>:<key>", so that no plugin reports
// under another's name.
func validateExtension(itemKey string, e *commonv1.Extension) error {
	if !ValidExtensionName(e.GetPlugin()) {
		return fmt.Errorf("extension plugin name %q is not valid", e.GetPlugin())
	}
	if !ValidExtensionName(e.GetKind()) {
		return fmt.Errorf("extension kind %q is not valid", e.GetKind())
	}
	if e.GetKey() == "" {
		return fmt.Errorf("extension has an empty key")
	}
	if want := e.GetPlugin() + ":" + e.GetKind() + ":" + e.GetKey(); itemKey != want {
		return fmt.Errorf("extension item key is not %q", want)
	}
	return nil
}
