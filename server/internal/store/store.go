// Package store defines what the server persists, as small interfaces per
// aggregate composed into Store. Backends live in subpackages (bboltstore,
// and later pgstore) and must pass the same conformance suite in storetest.
package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Errors every backend returns, checked with errors.Is; the API and gRPC
// layers map them to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrTokenInvalid covers unknown, expired and used-up enrollment tokens;
	// the wrapping error says which, the client is told only this.
	ErrTokenInvalid = errors.New("enrollment token invalid")
	// ErrInvalid is returned, and nothing is changed, for input a backend
	// refuses to store: an empty ID or hash, or an inventory update that is
	// malformed (an item failing inventory.Validate, a full inventory with
	// removals).
	ErrInvalid = errors.New("invalid input")
)

// Store is everything the server persists.
type Store interface {
	Hosts
	Tokens
	Inventory
	History
	Commands
	Audit
	Retention
	Baselines
	DriftStore
	Advisories
	Mutes
	// Close releases the backend.
	Close() error
}

// Host is an enrolled agent's host.
type Host struct {
	ID       string            `json:"id"`
	Hostname string            `json:"hostname"`
	Labels   map[string]string `json:"labels"`
	// EnrolledAt is when the host first enrolled.
	EnrolledAt time.Time `json:"enrolled_at"`
	// LastSeen is the last time a stream from this host delivered anything.
	LastSeen time.Time `json:"last_seen"`
	// AgentVersion and Facts are from the agent's last Hello.
	AgentVersion string            `json:"agent_version,omitempty"`
	Facts        *commonv1.OSFacts `json:"-"`
	// CertSerial and CertNotAfter describe the newest certificate issued.
	CertSerial   string    `json:"cert_serial,omitempty"`
	CertNotAfter time.Time `json:"cert_not_after"`
	// Revoked hosts are refused on every RPC and their streams closed.
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at"`
}

// Hosts persists hosts.
type Hosts interface {
	// EnrollHost atomically consumes one use of the enrollment token whose
	// secret hashes to tokenHash, copies the token's labels onto h and
	// creates h. It returns an error wrapping ErrTokenInvalid when the token
	// is unknown, expired or used up, and ErrConflict when h.ID exists.
	EnrollHost(ctx context.Context, tokenHash []byte, now time.Time, h *Host) error
	// GetHost returns ErrNotFound for an unknown ID.
	GetHost(ctx context.Context, id string) (*Host, error)
	// ListHosts returns all hosts ordered by ID.
	ListHosts(ctx context.Context) ([]*Host, error)
	// UpdateHost reads, modifies and writes a host atomically; fn's error
	// aborts the update and is returned. fn may be called more than once
	// (a backend may retry or group-commit), so it must only change h.
	UpdateHost(ctx context.Context, id string, fn func(*Host) error) error
}

// Roles of API tokens, in increasing power.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// EnrollmentToken lets agents enroll. Only the SHA-256 of its secret is
// stored.
type EnrollmentToken struct {
	ID          string            `json:"id"`
	Hash        []byte            `json:"-"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels"`
	// UsesAllowed is how many enrollments the token allows; Used counts them.
	UsesAllowed int       `json:"uses_allowed"`
	Used        int       `json:"used"`
	ExpiresAt   time.Time `json:"expires_at"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
}

// APIToken authenticates an operator or tool on the REST API. Only the
// SHA-256 of its secret is stored.
type APIToken struct {
	ID        string    `json:"id"`
	Hash      []byte    `json:"-"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// Tokens persists enrollment and API tokens.
type Tokens interface {
	// CreateEnrollmentToken returns ErrConflict when the ID or hash exists.
	CreateEnrollmentToken(ctx context.Context, t *EnrollmentToken) error
	// ListEnrollmentTokens returns all tokens ordered by creation time.
	ListEnrollmentTokens(ctx context.Context) ([]*EnrollmentToken, error)
	// CreateAPIToken returns ErrConflict when the ID or hash exists.
	CreateAPIToken(ctx context.Context, t *APIToken) error
	// GetAPITokenByHash returns ErrNotFound for an unknown hash.
	GetAPITokenByHash(ctx context.Context, hash []byte) (*APIToken, error)
}

// InventoryUpdate is one Inventory message from a host's stream, with the
// host ID taken from its verified certificate.
type InventoryUpdate struct {
	HostID  string
	SpoolID string
	Seq     uint64
	Full    bool
	// Upserts are all items (Full) or the added and changed ones (delta).
	Upserts []*commonv1.Item
	// Removed is empty for a full inventory.
	Removed     []inventory.Ref
	SetHash     []byte
	CollectedAt time.Time
	ReceivedAt  time.Time
}

// Outcome says what ApplyInventory did.
type Outcome int

const (
	// Applied: the update is committed.
	Applied Outcome = iota + 1
	// Duplicate: seq was already consumed for this spool; nothing changed.
	Duplicate
	// HashMismatch: the resulting set would not match the agent's set hash;
	// the items are unchanged, seq is consumed and the stream needs a full
	// inventory.
	HashMismatch
	// NeedsFull: a delta arrived while a full inventory is awaited; seq is
	// consumed and the delta ignored.
	NeedsFull
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case HashMismatch:
		return "hash-mismatch"
	case NeedsFull:
		return "needs-full"
	}
	return "unknown"
}

// StreamState is the server's view of a host's stream.
type StreamState struct {
	SpoolID string
	// LastSeq is the highest sequence consumed for SpoolID.
	LastSeq uint64
	// SetHash is the hash of the stored item set; Items its size.
	SetHash []byte
	Items   int
	// NeedsFull is set after a mismatch until a full inventory is applied.
	NeedsFull bool
	// UpdatedAt is when the inventory last changed.
	UpdatedAt time.Time
}

// Inventory persists hosts' item sets.
type Inventory interface {
	// ApplyInventory applies u atomically and at most once per
	// (host, spool, seq). An update with a SpoolID other than the stored one
	// starts a new sequence scope: the stored items are kept, LastSeq starts
	// from zero and, unless u is full, the outcome is NeedsFull.
	// It returns ErrNotFound for an unknown host, and an error wrapping
	// ErrInvalid, consuming no seq, when u is malformed.
	ApplyInventory(ctx context.Context, u *InventoryUpdate) (Outcome, error)
	// GetStreamState returns the zero StreamState for a host that has sent
	// nothing, and ErrNotFound for an unknown host.
	GetStreamState(ctx context.Context, hostID string) (StreamState, error)
	// ListItems returns a host's items of one kind ("" for all), ordered by
	// kind then key (byte order). It returns ErrNotFound for an unknown host.
	// The items may be shared with other callers (a backend may cache
	// decoded items), so callers must not modify them.
	ListItems(ctx context.Context, hostID, kind string) ([]*commonv1.Item, error)
	// FindItems returns the host's items whose kind is p.Kind and whose key
	// starts with p.Key, for any p of prefixes (an empty Key: every item of
	// the kind), ordered by kind then key (byte order), each item once. It
	// returns ErrNotFound for an unknown host. Like ListItems, the items may
	// be shared with other callers and must not be modified. A backend
	// reads only the matching part of the host's items, so a few point
	// lookups cost little on a host with thousands; prefixes of unknown
	// kinds match nothing.
	FindItems(ctx context.Context, hostID string, prefixes []inventory.Ref) ([]*commonv1.Item, error)
	// CountItems returns the number of items per kind. It returns
	// ErrNotFound for an unknown host.
	CountItems(ctx context.Context, hostID string) (map[string]int, error)
}

// MergePrefixes returns the item key ranges FindItems reads for prefixes:
// the prefixes of known kinds, ordered by kind then key (byte order),
// without those a prefix of the same kind covers (duplicates included).
// The ranges of the prefixes it returns are disjoint and in order, so
// reading them one after the other yields each item once, in order.
func MergePrefixes(prefixes []inventory.Ref) []inventory.Ref {
	out := make([]inventory.Ref, 0, len(prefixes))
	for _, p := range prefixes {
		if slices.Contains(inventory.Kinds, p.Kind) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b inventory.Ref) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Key, b.Key))
	})
	// A prefix covering another sorts before it, and so does every prefix
	// between them: comparing with the last one kept is enough.
	n := 0
	for _, p := range out {
		if n > 0 && out[n-1].Kind == p.Kind && strings.HasPrefix(p.Key, out[n-1].Key) {
			continue
		}
		out[n] = p
		n++
	}
	return out[:n]
}

// AuditEntry records one mutating action. Entries form a hash chain: each
// Hash covers the entry and the previous entry's hash, so editing or
// deleting a past entry breaks every later one.
type AuditEntry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Target   string    `json:"target"`
	Detail   string    `json:"detail,omitempty"`
	PrevHash []byte    `json:"prev_hash"`
	Hash     []byte    `json:"hash"`
}

// Audit persists the audit log.
type Audit interface {
	// AppendAudit assigns e's Seq, PrevHash and Hash (see ChainAudit) and
	// stores it.
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// ListAudit returns up to limit entries with Seq > after, in order; a
	// limit of zero or less means no limit.
	ListAudit(ctx context.Context, after uint64, limit int) ([]*AuditEntry, error)
}
