package vulnsvc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/pkg/osv"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/vuln"
)

// Risk score constants; see docs/vulnerabilities.md.
const (
	// InternetFacingLabel marks a host reachable from the internet when
	// its value is "true".
	InternetFacingLabel = "internet-facing"
	// InternetFacingFactor and ListeningFactor weigh a finding's score.
	InternetFacingFactor = 1.5
	ListeningFactor      = 1.2
	// RiskScale is the weighted sum at which a host's risk is 63 of 100:
	// risk = 100 × (1 − e^(−sum/RiskScale)).
	RiskScale = 50.0
)

// levelScores stands in for a CVSS base score when an advisory has only a
// rating.
var levelScores = map[string]float64{
	osv.LevelCritical: 9.5,
	osv.LevelHigh:     7.5,
	osv.LevelMedium:   5,
	osv.LevelLow:      2.5,
	osv.LevelUnknown:  2.5,
	osv.LevelNone:     0,
}

// Finding is a finding on a host with its mute and risk weight.
type Finding struct {
	vuln.Finding
	// Muted is set while a mute applies; MuteID names it.
	Muted  bool   `json:"muted"`
	MuteID string `json:"mute_id,omitempty"`
	// Listening is set when a process of the package listens on a
	// non-loopback address.
	Listening bool `json:"listening,omitempty"`
	// Weight is the finding's contribution to the risk sum: its score
	// times the exposure factors (0 when muted).
	Weight float64 `json:"weight"`
}

// HostReport is one host's vulnerability answer.
type HostReport struct {
	Host      string `json:"host"`
	Ecosystem string `json:"ecosystem,omitempty"`
	// Reason says why there are no findings to show, when the host's OS
	// has no OSV ecosystem.
	Reason         string    `json:"reason,omitempty"`
	InternetFacing bool      `json:"internet_facing"`
	Packages       int       `json:"packages"`
	Open           int       `json:"open"`
	Muted          int       `json:"muted"`
	RiskScore      float64   `json:"risk_score"`
	ScannedAt      time.Time `json:"scanned_at"`
	Findings       []Finding `json:"findings"`
}

// Host returns the host's report; store.ErrNotFound for an unknown host.
func (s *Service) Host(ctx context.Context, hostID string) (*HostReport, error) {
	if err := s.Sync(ctx); err != nil {
		return nil, err
	}
	h, err := s.st.GetHost(ctx, hostID)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", hostID, err)
	}
	mutes, err := s.st.ListMutes(ctx)
	if err != nil {
		return nil, err
	}
	return s.hostReport(ctx, h, mutes)
}

func (s *Service) hostReport(ctx context.Context, h *store.Host, mutes []*store.Mute) (*HostReport, error) {
	now := s.now()
	rep := &HostReport{Host: h.ID, ScannedAt: now.UTC(), Findings: []Finding{},
		InternetFacing: strings.EqualFold(h.Labels[InternetFacingLabel], "true")}
	eco, err := HostEcosystem(h)
	if err != nil {
		if !errors.Is(err, osv.ErrUnsupportedOS) {
			return nil, err
		}
		rep.Reason = err.Error()
		return rep, nil
	}
	rep.Ecosystem = eco
	items, err := s.st.ListItems(ctx, h.ID, kindPackage)
	if err != nil {
		return nil, fmt.Errorf("packages of %s: %w", h.ID, err)
	}
	pkgs, hash := installedPackages(items)
	rep.Packages = len(pkgs)
	found := s.hostFindings(h.ID, eco, pkgs, hash)
	listening := map[string]bool{}
	if len(found) > 0 {
		listening, err = s.listeners(ctx, h.ID)
		if err != nil {
			return nil, err
		}
	}
	sum := 0.0
	for _, f := range found {
		rf := Finding{Finding: f, Listening: listening[f.Package] || (f.SourcePackage != "" && listening[f.SourcePackage])}
		if m := muteFor(mutes, h.ID, &f, now); m != nil {
			rf.Muted, rf.MuteID = true, m.ID
			rep.Muted++
		} else {
			rep.Open++
			rf.Weight = weight(f.Severity, rep.InternetFacing, rf.Listening)
			sum += rf.Weight
		}
		rep.Findings = append(rep.Findings, rf)
	}
	rep.RiskScore = RiskScore(sum)
	return rep, nil
}

// listeners returns the names of the processes listening on a
// non-loopback address. Port items are best-effort: an agent that does not
// report them, or cannot see the owning process, makes no package count as
// listening.
func (s *Service) listeners(ctx context.Context, hostID string) (map[string]bool, error) {
	items, err := s.st.ListItems(ctx, hostID, kindPort)
	if err != nil {
		return nil, fmt.Errorf("ports of %s: %w", hostID, err)
	}
	out := map[string]bool{}
	for _, it := range items {
		p := it.GetPort()
		if p == nil || p.GetProcess() == "" {
			continue
		}
		if a, err := netip.ParseAddr(p.GetAddress()); err == nil && a.Unmap().IsLoopback() {
			continue
		}
		out[p.GetProcess()] = true
	}
	return out, nil
}

// Score returns the score a finding's severity stands for: the CVSS base
// score, or else the level's stand-in.
func Score(a osv.Assessment) float64 {
	if a.Vector != "" {
		return a.Score
	}
	return levelScores[cmp.Or(a.Level, osv.LevelUnknown)]
}

func weight(a osv.Assessment, internetFacing, listening bool) float64 {
	w := Score(a)
	if internetFacing {
		w *= InternetFacingFactor
	}
	if listening {
		w *= ListeningFactor
	}
	return w
}

// RiskScore maps a weighted sum to 0-100, rounded to one decimal.
func RiskScore(sum float64) float64 {
	return math.Round(1000*(1-math.Exp(-sum/RiskScale))) / 10
}

// muteFor returns the mute that applies to f on host, if any.
func muteFor(mutes []*store.Mute, host string, f *vuln.Finding, now time.Time) *store.Mute {
	for _, m := range mutes {
		if !now.Before(m.Until) || (m.HostID != "" && m.HostID != host) {
			continue
		}
		if m.Package != "" && m.Package != f.Package && m.Package != f.SourcePackage {
			continue
		}
		if m.Vulnerability == f.AdvisoryID || slices.Contains(f.CVEs, m.Vulnerability) || slices.Contains(f.Aliases, m.Vulnerability) {
			return m
		}
	}
	return nil
}

// Vulnerability is one vulnerability across the fleet: a CVE, or an
// advisory ID for advisories that name none.
type Vulnerability struct {
	ID         string   `json:"id"`
	Advisories []string `json:"advisories"`
	Summary    string   `json:"summary,omitempty"`
	Level      string   `json:"level"`
	MaxScore   float64  `json:"max_score"`
	Packages   []string `json:"packages"`
	// AffectedHosts counts hosts with an open (unmuted) finding;
	// MutedHosts those where every finding of it is muted.
	AffectedHosts int  `json:"affected_hosts"`
	MutedHosts    int  `json:"muted_hosts"`
	FixAvailable  bool `json:"fix_available"`
	// FixableHosts counts affected hosts for which a fix is published.
	FixableHosts int `json:"fixable_hosts"`
}

// FleetReport is the fleet's vulnerability answer.
type FleetReport struct {
	Hosts int `json:"hosts"`
	// Scored counts hosts with an ecosystem; the risk figures are over
	// them.
	Scored          int             `json:"scored"`
	MeanRiskScore   float64         `json:"mean_risk_score"`
	MaxRiskScore    float64         `json:"max_risk_score"`
	Vulnerabilities []Vulnerability `json:"vulnerabilities"`
}

// Fleet returns every host's findings grouped by vulnerability, ordered
// by affected hosts then maximum score, descending. Revoked hosts are
// left out.
func (s *Service) Fleet(ctx context.Context) (*FleetReport, error) {
	if err := s.Sync(ctx); err != nil {
		return nil, err
	}
	hosts, err := s.st.ListHosts(ctx)
	if err != nil {
		return nil, err
	}
	mutes, err := s.st.ListMutes(ctx)
	if err != nil {
		return nil, err
	}
	rep := &FleetReport{Vulnerabilities: []Vulnerability{}}
	byID := map[string]*Vulnerability{}
	var order []string
	sum := 0.0
	for _, h := range hosts {
		if h.Revoked {
			continue
		}
		rep.Hosts++
		hr, err := s.hostReport(ctx, h, mutes)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if hr.Ecosystem == "" {
			continue
		}
		rep.Scored++
		sum += hr.RiskScore
		rep.MaxRiskScore = max(rep.MaxRiskScore, hr.RiskScore)
		type hostState struct{ open, muted, fixable bool }
		seen := map[string]*hostState{}
		for _, f := range hr.Findings {
			for _, id := range vulnIDs(&f.Finding) {
				v := byID[id]
				if v == nil {
					v = &Vulnerability{ID: id, Summary: f.Summary, Level: osv.LevelNone}
					byID[id] = v
					order = append(order, id)
				}
				if !slices.Contains(v.Advisories, f.AdvisoryID) {
					v.Advisories = append(v.Advisories, f.AdvisoryID)
				}
				pkg := cmp.Or(f.SourcePackage, f.Package)
				if !slices.Contains(v.Packages, pkg) {
					v.Packages = append(v.Packages, pkg)
				}
				if sc := Score(f.Severity); sc > v.MaxScore {
					v.MaxScore = sc
				}
				if levelRank(f.Severity.Level) > levelRank(v.Level) {
					v.Level = f.Severity.Level
				}
				v.FixAvailable = v.FixAvailable || f.FixAvailable
				hs := seen[id]
				if hs == nil {
					hs = &hostState{}
					seen[id] = hs
				}
				if f.Muted {
					hs.muted = true
				} else {
					hs.open = true
					hs.fixable = hs.fixable || f.FixAvailable
				}
			}
		}
		for id, hs := range seen {
			v := byID[id]
			switch {
			case hs.open:
				v.AffectedHosts++
				if hs.fixable {
					v.FixableHosts++
				}
			case hs.muted:
				v.MutedHosts++
			}
		}
	}
	if rep.Scored > 0 {
		rep.MeanRiskScore = math.Round(10*sum/float64(rep.Scored)) / 10
	}
	for _, id := range order {
		rep.Vulnerabilities = append(rep.Vulnerabilities, *byID[id])
	}
	slices.SortStableFunc(rep.Vulnerabilities, func(a, b Vulnerability) int {
		return cmp.Or(cmp.Compare(b.AffectedHosts, a.AffectedHosts), cmp.Compare(b.MaxScore, a.MaxScore), cmp.Compare(a.ID, b.ID))
	})
	return rep, nil
}

// vulnIDs returns the IDs a finding is listed under: its CVEs, or its
// advisory ID when it names none.
func vulnIDs(f *vuln.Finding) []string {
	if len(f.CVEs) > 0 {
		return f.CVEs
	}
	return []string{f.AdvisoryID}
}

func levelRank(l string) int {
	switch l {
	case osv.LevelCritical:
		return 5
	case osv.LevelHigh:
		return 4
	case osv.LevelMedium:
		return 3
	case osv.LevelLow:
		return 2
	case osv.LevelUnknown:
		return 1
	}
	return 0
}

// State is the database's summary.
type State struct {
	store.AdvisoryState
	// Indexed is the number of advisories this replica matches with
	// (withdrawn ones are not).
	Indexed int `json:"indexed"`
}

// State returns the database's summary.
func (s *Service) State(ctx context.Context) (State, error) {
	if err := s.Sync(ctx); err != nil {
		return State{}, err
	}
	st, err := s.st.GetAdvisoryState(ctx)
	if err != nil {
		return State{}, err
	}
	return State{AdvisoryState: st, Indexed: s.ix.Len()}, nil
}
