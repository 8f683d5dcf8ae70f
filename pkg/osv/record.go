// Package osv reads Open Source Vulnerability (OSV) records, the format the
// distributions publish their security advisories in (Debian, Ubuntu,
// AlmaLinux, Rocky Linux, Red Hat, Alpine ...): the record model with the
// fields a fleet needs for matching, validation, a streaming importer over
// a directory, a .zip as OSV publishes per ecosystem, or one file, the
// CVSS v3 base score, and the mapping from a host's OS facts to the
// ecosystem whose records apply to it.
//
// The format is specified at https://ossf.github.io/osv-schema/.
package osv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/pkg/versioncmp"
)

// A Record is one OSV advisory, reduced to what matching and reporting use.
type Record struct {
	SchemaVersion string    `json:"schema_version,omitempty"`
	ID            string    `json:"id"`
	Modified      time.Time `json:"modified"`
	Published     time.Time `json:"published,omitzero"`
	// Withdrawn is set when the advisory was retracted; such a record must
	// no longer produce findings.
	Withdrawn time.Time `json:"withdrawn,omitzero"`
	Aliases   []string  `json:"aliases,omitempty"`
	// Related lists other advisories about the same problem. AlmaLinux and
	// Rocky Linux records list the CVEs they fix here.
	Related []string `json:"related,omitempty"`
	// Upstream lists the advisories this one derives from; Debian and Red
	// Hat records list their CVEs here.
	Upstream         []string        `json:"upstream,omitempty"`
	Summary          string          `json:"summary,omitempty"`
	Details          string          `json:"details,omitempty"`
	Severity         []Severity      `json:"severity,omitempty"`
	Affected         []Affected      `json:"affected,omitempty"`
	DatabaseSpecific json.RawMessage `json:"database_specific,omitempty"`
}

// Severity is one severity statement: a CVSS vector, or a distribution's
// own rating (type "Ubuntu", score "medium").
type Severity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

// Severity types.
const (
	SeverityCVSSv2 = "CVSS_V2"
	SeverityCVSSv3 = "CVSS_V3"
	SeverityCVSSv4 = "CVSS_V4"
	SeverityUbuntu = "Ubuntu"
)

// Affected names one package in one ecosystem and the versions of it the
// advisory applies to: those in Ranges and those listed in Versions.
type Affected struct {
	Package  Package    `json:"package"`
	Severity []Severity `json:"severity,omitempty"`
	Ranges   []Range    `json:"ranges,omitempty"`
	Versions []string   `json:"versions,omitempty"`
	// EcosystemSpecific holds, for Ubuntu, the binaries built from the
	// source package and the Ubuntu priority; for Debian, the urgency.
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific,omitempty"`
	DatabaseSpecific  json.RawMessage `json:"database_specific,omitempty"`
}

// Package identifies a package within an ecosystem.
type Package struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
	Purl      string `json:"purl,omitempty"`
}

// A Range is a timeline of events in one version scheme.
type Range struct {
	Type   string  `json:"type"`
	Repo   string  `json:"repo,omitempty"`
	Events []Event `json:"events"`
}

// Range types.
const (
	RangeEcosystem = "ECOSYSTEM"
	RangeSemver    = "SEMVER"
	RangeGit       = "GIT"
)

// An Event is exactly one of: the version a vulnerability was introduced
// in ("0" for the beginning), the version that fixed it, the last version
// known to be affected, or an upper limit of the range.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// MaxRecordSize is the largest record file Parse accepts. The largest real
// records (Ubuntu's kernel CVEs, listing every kernel version of every
// release) are a few megabytes.
const MaxRecordSize = 32 << 20

// ErrTooLarge is returned for a record file larger than MaxRecordSize.
var ErrTooLarge = errors.New("record larger than 32 MiB")

// Parse reads one record from r and validates it.
func Parse(r io.Reader) (*Record, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	if len(data) > MaxRecordSize {
		return nil, ErrTooLarge
	}
	return ParseBytes(data)
}

// ParseBytes decodes and validates one record.
func ParseBytes(data []byte) (*Record, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode JSON: data after the record")
	}
	if err := rec.Validate(); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Validate reports what makes r unusable: missing id or modified time, an
// affected package without ecosystem or name, a malformed range, a version
// its ecosystem's package manager would not accept, a malformed CVSS v3
// vector. All problems are joined into one error.
func (r *Record) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case r.ID == "":
		bad("id is missing")
	case len(r.ID) > 256 || strings.ContainsFunc(r.ID, func(c rune) bool { return c <= ' ' || c == 0x7f }):
		bad("id %q is malformed", r.ID)
	}
	if r.Modified.IsZero() {
		bad("modified is missing")
	}
	errs = append(errs, validateSeverity("severity", r.Severity)...)
	for i := range r.Affected {
		errs = append(errs, r.Affected[i].validate(fmt.Sprintf("affected[%d]", i))...)
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more problems", len(errs)-5))
	}
	return errors.Join(errs...)
}

func validateSeverity(where string, sev []Severity) []error {
	var errs []error
	for i, s := range sev {
		if s.Score == "" {
			errs = append(errs, fmt.Errorf("%s[%d]: score is missing", where, i))
			continue
		}
		if s.Type == SeverityCVSSv3 {
			if _, err := ParseCVSS3(s.Score); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", where, i, err))
			}
		}
	}
	return errs
}

func (a *Affected) validate(where string) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": "+format, args...))
	}
	if a.Package.Ecosystem == "" {
		bad("package ecosystem is missing")
	}
	if a.Package.Name == "" {
		bad("package name is missing")
	}
	errs = append(errs, validateSeverity(where+".severity", a.Severity)...)
	// Versions are checked against the ecosystem's own rules where this
	// package knows them; other ecosystems' versions are kept as given.
	cmp, _ := versioncmp.ForEcosystem(a.Package.Ecosystem)
	checkVersion := func(what, v string) {
		if v == "" {
			bad("%s is empty", what)
		} else if cmp != nil {
			if err := cmp.Valid(v); err != nil {
				bad("%s: %v", what, err)
			}
		}
	}
	for i, rg := range a.Ranges {
		rw := fmt.Sprintf("ranges[%d]", i)
		switch rg.Type {
		case RangeEcosystem, RangeSemver:
		case RangeGit:
			if rg.Repo == "" {
				bad("%s: GIT range without repo", rw)
			}
		default:
			bad("%s: unknown type %q", rw, rg.Type)
		}
		if len(rg.Events) == 0 {
			bad("%s: no events", rw)
		}
		var introduced, fixed, lastAffected bool
		for j, e := range rg.Events {
			ew := fmt.Sprintf("%s.events[%d]", rw, j)
			n := 0
			for _, f := range []string{e.Introduced, e.Fixed, e.LastAffected, e.Limit} {
				if f != "" {
					n++
				}
			}
			if n != 1 {
				bad("%s: want exactly one of introduced, fixed, last_affected, limit; have %d", ew, n)
				continue
			}
			versioned := rg.Type == RangeEcosystem
			switch {
			case e.Introduced != "":
				introduced = true
				if versioned && e.Introduced != "0" {
					checkVersion(ew+".introduced", e.Introduced)
				}
			case e.Fixed != "":
				fixed = true
				if versioned {
					checkVersion(ew+".fixed", e.Fixed)
				}
			case e.LastAffected != "":
				lastAffected = true
				if versioned {
					checkVersion(ew+".last_affected", e.LastAffected)
				}
			case e.Limit != "":
				if versioned && e.Limit != "*" {
					checkVersion(ew+".limit", e.Limit)
				}
			}
		}
		if len(rg.Events) > 0 && !introduced {
			bad("%s: no introduced event", rw)
		}
		if fixed && lastAffected {
			bad("%s: both fixed and last_affected events", rw)
		}
	}
	for i, v := range a.Versions {
		checkVersion(fmt.Sprintf("versions[%d]", i), v)
	}
	return errs
}

// IsWithdrawn reports whether the advisory was retracted.
func (r *Record) IsWithdrawn() bool { return !r.Withdrawn.IsZero() }

// CVEs returns the CVE identifiers the record is about: its own id if it
// is one, then those among its aliases, upstream and related ids, in that
// order, without duplicates.
func (r *Record) CVEs() []string {
	var out []string
	seen := map[string]bool{}
	for _, list := range [][]string{{r.ID}, r.Aliases, r.Upstream, r.Related} {
		for _, id := range list {
			if strings.HasPrefix(id, "CVE-") && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out
}
