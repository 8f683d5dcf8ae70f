package osv

import (
	"encoding/json"
	"strings"
)

// Assessment is how severe an advisory is for one affected package.
type Assessment struct {
	// Score is the CVSS v3 base score computed from Vector; 0 without one.
	Score  float64 `json:"score,omitempty"`
	Vector string  `json:"vector,omitempty"`
	// Rating is the distribution's own rating as it wrote it: Red Hat
	// family "Important", Ubuntu priority "medium", Debian urgency "low".
	Rating string `json:"rating,omitempty"`
	// Level is "critical", "high", "medium", "low", "none" or "unknown":
	// from Score when there is a vector, else from Rating.
	Level string `json:"level"`
}

// Levels.
const (
	LevelCritical = "critical"
	LevelHigh     = "high"
	LevelMedium   = "medium"
	LevelLow      = "low"
	LevelNone     = "none"
	LevelUnknown  = "unknown"
)

// ratingLevels maps the distributions' ratings, lower-cased, to levels.
var ratingLevels = map[string]string{
	"critical":    LevelCritical,
	"important":   LevelHigh,
	"high":        LevelHigh,
	"moderate":    LevelMedium,
	"medium":      LevelMedium,
	"low":         LevelLow,
	"negligible":  LevelLow,
	"unimportant": LevelLow,
}

// Assess returns the severity of r for its affected package a (a may be
// nil): the highest CVSS v3 base score among a's severities, or else the
// record's; and the distribution's rating from, in order, a severity of
// type "Ubuntu", the Ubuntu priority or Debian urgency in
// ecosystem_specific, a "severity" in database_specific, or the Red Hat
// family's summary prefix ("Important: openssl security update").
func (r *Record) Assess(a *Affected) Assessment {
	var as Assessment
	var sevs [][]Severity
	if a != nil {
		sevs = append(sevs, a.Severity)
	}
	sevs = append(sevs, r.Severity)
	for _, list := range sevs {
		for _, s := range list {
			switch s.Type {
			case SeverityCVSSv3:
				if score, err := CVSS3BaseScore(s.Score); err == nil && (as.Vector == "" || score > as.Score) {
					as.Score, as.Vector = score, s.Score
				}
			case SeverityUbuntu:
				if as.Rating == "" {
					as.Rating = s.Score
				}
			}
		}
		if as.Vector != "" {
			break
		}
	}
	if as.Rating == "" && a != nil {
		as.Rating = jsonString(a.EcosystemSpecific, "ubuntu_priority", "urgency", "severity")
	}
	if as.Rating == "" && a != nil {
		as.Rating = jsonString(a.DatabaseSpecific, "severity")
	}
	if as.Rating == "" {
		as.Rating = jsonString(r.DatabaseSpecific, "severity")
	}
	if as.Rating == "" {
		if prefix, _, ok := strings.Cut(r.Summary, ":"); ok {
			if _, known := ratingLevels[strings.ToLower(prefix)]; known {
				as.Rating = prefix
			}
		}
	}
	switch {
	case as.Vector != "":
		as.Level = Rating(as.Score)
	case ratingLevels[strings.ToLower(as.Rating)] != "":
		as.Level = ratingLevels[strings.ToLower(as.Rating)]
	default:
		as.Level = LevelUnknown
	}
	return as
}

// jsonString returns the first of keys that raw, a JSON object, holds as
// a string.
func jsonString(raw json.RawMessage, keys ...string) string {
	if len(raw) == 0 {
		return ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	for _, k := range keys {
		var s string
		if v, ok := m[k]; ok && json.Unmarshal(v, &s) == nil && s != "" {
			return s
		}
	}
	return ""
}
