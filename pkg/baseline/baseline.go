// Package baseline is the model of golden baselines: versioned documents of
// what a host is expected to have (packages, files, users, services), the
// label selector saying which hosts each applies to, and the pure evaluator
// that turns a host's inventory into deviations (drift).
//
// Documents are read from YAML or JSON with unknown fields rejected (Parse),
// checked by Validate, built from a reference host by Capture, and compared
// with a host by Evaluate. The package has no I/O and no clock.
package baseline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Package version constraints.
const (
	ConstraintExact     = "exact"     // installed at exactly Version
	ConstraintMinimum   = "minimum"   // installed at Version or later
	ConstraintForbidden = "forbidden" // not installed
	ConstraintPresent   = "present"   // installed, any version
)

// Service states a baseline can require.
const (
	ServiceEnabled  = "enabled"
	ServiceDisabled = "disabled"
	ServiceMasked   = "masked"
	ServiceRunning  = "running"
	ServiceAbsent   = "absent"
)

// Drift types, from the product notes.
const (
	TypeVersion       = "version"
	TypeConfiguration = "configuration"
	TypePermissions   = "permissions"
	TypeServices      = "services"
	TypeUsers         = "users"
)

// Types lists every drift type.
var Types = []string{TypeVersion, TypeConfiguration, TypePermissions, TypeServices, TypeUsers}

// Severities, in increasing order.
const (
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Severities lists every severity, in increasing order.
var Severities = []string{SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}

// Actions a policy may name. This package only records the intended action;
// remediation is not carried out here.
var Actions = []string{"auto-patch", "auto-fix", "alert", "isolate", "alert+block", "scheduled", "manual", "ignore"}

// DefaultPolicy is the severity and action of each drift type when a
// baseline does not override it (product notes, "Drift Types").
var DefaultPolicy = map[string]Policy{
	TypeVersion:       {Severity: SeverityHigh, Action: "auto-patch"},
	TypeConfiguration: {Severity: SeverityMedium, Action: "alert"},
	TypePermissions:   {Severity: SeverityHigh, Action: "auto-fix"},
	TypeServices:      {Severity: SeverityCritical, Action: "isolate"},
	TypeUsers:         {Severity: SeverityCritical, Action: "alert+block"},
}

// Baseline is one version of a golden baseline document.
type Baseline struct {
	// Name identifies the baseline across versions, e.g. "ubuntu-22.04-web".
	Name string `json:"name" yaml:"name"`
	// Version is assigned by the server: 1 for the first document stored
	// under Name, then one more for each change. Versions are immutable.
	// It is ignored in a document being applied.
	Version int `json:"version,omitempty" yaml:"version,omitempty"`
	// Description is free text.
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	// Priority orders baselines matching the same host: for one subject (a
	// package, a file, a service, a user rule) the baseline with the higher
	// priority wins, ties broken by the smaller name. See Evaluate.
	Priority int `json:"priority,omitempty" yaml:"priority,omitempty"`
	// Selector is the label selector of the hosts the baseline applies to:
	// a host matches when it has every key=value. An empty selector matches
	// every host.
	Selector map[string]string `json:"selector,omitempty" yaml:"selector,omitempty"`
	Metadata Metadata          `json:"metadata,omitzero" yaml:"metadata,omitempty"`
	// Policy overrides DefaultPolicy per drift type.
	Policy   map[string]Policy `json:"policy,omitempty" yaml:"policy,omitempty"`
	Packages []PackageRule     `json:"packages,omitempty" yaml:"packages,omitempty"`
	Files    []FileRule        `json:"files,omitempty" yaml:"files,omitempty"`
	Users    *UserRules        `json:"users,omitempty" yaml:"users,omitempty"`
	Services []ServiceRule     `json:"services,omitempty" yaml:"services,omitempty"`
	// CreatedAt and CreatedBy are set by the server when the version is
	// stored; ignored in a document being applied.
	CreatedAt time.Time `json:"created_at,omitzero" yaml:"created_at,omitempty"`
	CreatedBy string    `json:"created_by,omitempty" yaml:"created_by,omitempty"`
}

// Metadata describes where a baseline comes from.
type Metadata struct {
	// OS is the operating system's pretty name, e.g. "Ubuntu 22.04.4 LTS".
	OS string `json:"os,omitempty" yaml:"os,omitempty"`
	// Platform and PlatformVersion are the OS facts' ("ubuntu", "22.04").
	Platform        string `json:"platform,omitempty" yaml:"platform,omitempty"`
	PlatformVersion string `json:"platform_version,omitempty" yaml:"platform_version,omitempty"`
	// Image is the golden image the reference host was built from.
	Image string `json:"image,omitempty" yaml:"image,omitempty"`
	// CapturedFrom is the host ID a captured baseline was taken from.
	CapturedFrom string `json:"captured_from,omitempty" yaml:"captured_from,omitempty"`
}

// Policy is the severity and the intended action of one drift type.
type Policy struct {
	Severity string `json:"severity" yaml:"severity"`
	Action   string `json:"action" yaml:"action"`
}

// PackageRule constrains one package.
type PackageRule struct {
	Name string `json:"name" yaml:"name"`
	// Arch, when set, limits the rule to that architecture.
	Arch string `json:"arch,omitempty" yaml:"arch,omitempty"`
	// Constraint is exact, minimum, forbidden or present.
	Constraint string `json:"constraint" yaml:"constraint"`
	// Version is required by exact and minimum, refused otherwise.
	Version string `json:"version,omitempty" yaml:"version,omitempty"`
}

// FileRule constrains one file. At least one of Sha256, Mode, Owner and
// Group is set.
type FileRule struct {
	Path   string `json:"path" yaml:"path"`
	Sha256 string `json:"sha256,omitempty" yaml:"sha256,omitempty"`
	// Mode is the permission bits in octal, e.g. "0644".
	Mode  string `json:"mode,omitempty" yaml:"mode,omitempty"`
	Owner string `json:"owner,omitempty" yaml:"owner,omitempty"`
	Group string `json:"group,omitempty" yaml:"group,omitempty"`
}

// UserRules constrain the host's local accounts as a set.
type UserRules struct {
	// Allowed, when non-empty, is the complete set of accounts allowed:
	// any other account is drift.
	Allowed []string `json:"allowed,omitempty" yaml:"allowed,omitempty"`
	// Forbidden accounts must not exist.
	Forbidden []string `json:"forbidden,omitempty" yaml:"forbidden,omitempty"`
	// UID0OnlyRoot: no account but root has UID 0.
	UID0OnlyRoot bool `json:"uid0_only_root,omitempty" yaml:"uid0_only_root,omitempty"`
	// NoEmptyPasswords: no account has an empty password.
	NoEmptyPasswords bool `json:"no_empty_passwords,omitempty" yaml:"no_empty_passwords,omitempty"`
}

// ServiceRule requires a service to be in one state.
type ServiceRule struct {
	Name  string `json:"name" yaml:"name"`
	State string `json:"state" yaml:"state"`
}

// ErrInvalid wraps every error of Parse and Validate.
var ErrInvalid = errors.New("invalid baseline")

// Parse reads one baseline document, YAML or JSON (JSON is YAML, but a
// document starting with '{' is read with encoding/json for its exact
// errors). Unknown fields are rejected. The result is validated.
func Parse(data []byte) (*Baseline, error) {
	var b Baseline
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrInvalid)
	}
	if trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(trimmed))
		dec.KnownFields(true)
		if err := dec.Decode(&b); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		var extra any
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
		}
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// YAML returns the document as YAML.
func (b *Baseline) YAML() ([]byte, error) { return yaml.Marshal(b) }

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Limits on a document.
const (
	maxRules = 100000
	maxField = 4096
)

// Validate checks the document: a valid name, known constraints, states,
// types, severities and actions, no subject listed twice.
func (b *Baseline) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !nameRE.MatchString(b.Name) {
		return bad("name %q must be 1-63 characters of [a-z0-9-_.], starting and ending alphanumeric", clip(b.Name))
	}
	if n := len(b.Packages) + len(b.Files) + len(b.Services); n > maxRules {
		return bad("%d rules, more than %d", n, maxRules)
	}
	for k, v := range b.Selector {
		if k == "" || len(k) > 317 || len(v) > 63 {
			return bad("selector %q=%q is not a valid label", clip(k), clip(v))
		}
	}
	for typ, p := range b.Policy {
		if !slices.Contains(Types, typ) {
			return bad("policy: unknown drift type %q (want one of %s)", clip(typ), strings.Join(Types, ", "))
		}
		if !slices.Contains(Severities, p.Severity) {
			return bad("policy %s: severity %q (want one of %s)", typ, clip(p.Severity), strings.Join(Severities, ", "))
		}
		if !slices.Contains(Actions, p.Action) {
			return bad("policy %s: action %q (want one of %s)", typ, clip(p.Action), strings.Join(Actions, ", "))
		}
	}
	seen := map[string]bool{}
	for i, p := range b.Packages {
		if p.Name == "" || len(p.Name) > maxField || len(p.Arch) > maxField || len(p.Version) > maxField {
			return bad("packages[%d]: name is required", i)
		}
		subj := p.Name + ":" + p.Arch
		if seen[subj] {
			return bad("packages[%d]: %s listed twice", i, clip(subj))
		}
		seen[subj] = true
		switch p.Constraint {
		case ConstraintExact, ConstraintMinimum:
			if p.Version == "" {
				return bad("packages[%d] %s: constraint %s needs a version", i, clip(p.Name), p.Constraint)
			}
		case ConstraintForbidden, ConstraintPresent:
			if p.Version != "" {
				return bad("packages[%d] %s: constraint %s takes no version", i, clip(p.Name), p.Constraint)
			}
		default:
			return bad("packages[%d] %s: constraint %q (want exact, minimum, forbidden or present)", i, clip(p.Name), clip(p.Constraint))
		}
	}
	clear(seen)
	for i, f := range b.Files {
		if !strings.HasPrefix(f.Path, "/") || len(f.Path) > maxField || len(f.Owner) > maxField || len(f.Group) > maxField {
			return bad("files[%d]: path %q must be absolute", i, clip(f.Path))
		}
		if seen[f.Path] {
			return bad("files[%d]: %s listed twice", i, clip(f.Path))
		}
		seen[f.Path] = true
		if f.Sha256 == "" && f.Mode == "" && f.Owner == "" && f.Group == "" {
			return bad("files[%d] %s: give at least one of sha256, mode, owner, group", i, clip(f.Path))
		}
		if f.Sha256 != "" && !sha256RE.MatchString(f.Sha256) {
			return bad("files[%d] %s: sha256 must be 64 lower-case hex digits", i, clip(f.Path))
		}
		if f.Mode != "" {
			if _, err := ParseMode(f.Mode); err != nil {
				return bad("files[%d] %s: %v", i, clip(f.Path), err)
			}
		}
	}
	clear(seen)
	for i, s := range b.Services {
		if s.Name == "" || len(s.Name) > maxField {
			return bad("services[%d]: name is required", i)
		}
		// "nginx" and "nginx.service" name one systemd unit.
		if seen[serviceKey(s.Name)] {
			return bad("services[%d]: %s listed twice", i, clip(s.Name))
		}
		seen[serviceKey(s.Name)] = true
		switch s.State {
		case ServiceEnabled, ServiceDisabled, ServiceMasked, ServiceRunning, ServiceAbsent:
		default:
			return bad("services[%d] %s: state %q (want enabled, disabled, masked, running or absent)", i, clip(s.Name), clip(s.State))
		}
	}
	if u := b.Users; u != nil {
		for _, n := range append(slices.Clone(u.Allowed), u.Forbidden...) {
			if n == "" || len(n) > maxField {
				return bad("users: empty account name")
			}
		}
		for _, n := range u.Forbidden {
			if slices.Contains(u.Allowed, n) {
				return bad("users: %s is both allowed and forbidden", clip(n))
			}
		}
	}
	return nil
}

// ParseMode parses an octal permission mode such as "0644" or "644".
func ParseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q must be octal permission bits, at most 07777", clip(s))
	}
	return uint32(m), nil
}

// FormatMode formats permission bits as ParseMode reads them.
func FormatMode(m uint32) string { return fmt.Sprintf("%04o", m&0o7777) }

// PolicyFor returns the baseline's severity and action for a drift type.
func (b *Baseline) PolicyFor(typ string) Policy {
	if p, ok := b.Policy[typ]; ok {
		return p
	}
	return DefaultPolicy[typ]
}

// Matches reports whether a host with these labels is selected.
func (b *Baseline) Matches(labels map[string]string) bool {
	for k, v := range b.Selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// SameContent reports whether a and b differ only in Version, CreatedAt
// and CreatedBy: applying such a document makes no new version.
func SameContent(a, b *Baseline) bool {
	ca, cb := *a, *b
	ca.Version, cb.Version = 0, 0
	ca.CreatedAt, cb.CreatedAt = time.Time{}, time.Time{}
	ca.CreatedBy, cb.CreatedBy = "", ""
	ja, err1 := json.Marshal(&ca)
	jb, err2 := json.Marshal(&cb)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}
