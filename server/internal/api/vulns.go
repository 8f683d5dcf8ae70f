package api

import (
	"bufio"
	"cmp"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/pkg/osv"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/vulnsvc"
)

// Limits of the vulnerability endpoints.
const (
	// maxImportBytes bounds an import body: OSV's largest distribution
	// archive (Ubuntu's all.zip) is well below it.
	maxImportBytes = 512 << 20
	// importTimeout is how long an import request may take to upload and
	// process, overriding the server's read and write timeouts.
	importTimeout   = 30 * time.Minute
	maxMuteTTL      = 365 * 24 * time.Hour
	maxJustifyBytes = 1024
)

// importReport is the answer of POST /api/v1/vulndb/import.
type importReport struct {
	Files     int             `json:"files"`
	Added     int             `json:"added"`
	Updated   int             `json:"updated"`
	Unchanged int             `json:"unchanged"`
	Withdrawn int             `json:"withdrawn"`
	Invalid   []invalidRecord `json:"invalid"`
}

type invalidRecord struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// handleImportVulnDB serves POST /api/v1/vulndb/import: the body is an
// OSV .zip (application/zip), one record or an array of records
// (application/json). It is spooled to a temporary directory, since a zip
// is read from its end, and imported from there.
func (s *server) handleImportVulnDB(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/zip" && mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/zip or application/json")
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(importTimeout))
	_ = rc.SetWriteDeadline(time.Now().Add(importTimeout))
	dir, err := os.MkdirTemp(s.backupDir, "qinfra-vulndb-*")
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer os.RemoveAll(dir)
	body := http.MaxBytesReader(w, r.Body, maxImportBytes)
	var src string
	if mt == "application/zip" {
		src = filepath.Join(dir, "upload.zip")
		err = spool(body, src)
	} else {
		src = filepath.Join(dir, "upload")
		err = spoolJSON(body, src)
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, codePayloadTooLarge, "request body exceeds %d bytes", tooBig.Limit)
		}
		var ae *apiError
		if errors.As(err, &ae) {
			return ae
		}
		return badRequest("read request body: %v", err)
	}
	rep, err := s.vulns.Import(r.Context(), src, func(p vulnsvc.Progress) {
		s.log.Info("vulnerability import progress", "stored", p.Stored)
	})
	if err != nil {
		return err
	}
	out := importReport{Files: rep.Files, Added: rep.Added, Updated: rep.Updated, Unchanged: rep.Unchanged,
		Withdrawn: rep.Withdrawn, Invalid: []invalidRecord{}}
	for _, fe := range rep.Invalid {
		p, _ := filepath.Rel(dir, fe.Path)
		out.Invalid = append(out.Invalid, invalidRecord{Path: cmp.Or(p, fe.Path), Reason: fe.Err.Error()})
	}
	detail := out
	detail.Invalid = nil
	if err := s.audit(r, "vulndb.import", "vulndb", detail); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func spool(r io.Reader, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// spoolJSON writes one record to dir/record.json, or each element of an
// array to dir/NNNNNN.json, streaming: one element in memory at a time.
func spoolJSON(r io.Reader, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	br := bufio.NewReader(r)
	for {
		b, err := br.ReadByte()
		if err != nil {
			return badRequest("request body is empty; expected an OSV record or an array of them")
		}
		if b == ' ' || b == '\n' || b == '\r' || b == '\t' {
			continue
		}
		_ = br.UnreadByte()
		if b != '[' {
			return spool(br, filepath.Join(dir, "record.json"))
		}
		break
	}
	dec := json.NewDecoder(br)
	if _, err := dec.Token(); err != nil {
		return badRequest("malformed JSON array")
	}
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return err
			}
			return badRequest("element %d of the array: %v", i, decodeError(err))
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%06d.json", i)), raw, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// handleVulnDBState serves GET /api/v1/vulndb.
func (s *server) handleVulnDBState(w http.ResponseWriter, r *http.Request) error {
	st, err := s.vulns.State(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// handleListVulnerabilities serves GET
// /api/v1/vulnerabilities[?cve=][&severity=][&fixable=true].
func (s *server) handleListVulnerabilities(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var fixable *bool
	if v := q.Get("fixable"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("query parameter fixable must be true or false")
		}
		fixable = &b
	}
	sev := strings.ToLower(q.Get("severity"))
	switch sev {
	case "", osv.LevelCritical, osv.LevelHigh, osv.LevelMedium, osv.LevelLow, osv.LevelUnknown, osv.LevelNone:
	default:
		return badRequest("query parameter severity must be critical, high, medium, low, unknown or none")
	}
	rep, err := s.vulns.Fleet(r.Context())
	if err != nil {
		return err
	}
	cve := q.Get("cve")
	kept := rep.Vulnerabilities[:0]
	for _, v := range rep.Vulnerabilities {
		if (cve == "" || strings.EqualFold(v.ID, cve)) && (sev == "" || v.Level == sev) && (fixable == nil || v.FixAvailable == *fixable) {
			kept = append(kept, v)
		}
	}
	rep.Vulnerabilities = kept
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// handleHostVulnerabilities serves GET /api/v1/hosts/{id}/vulnerabilities.
func (s *server) handleHostVulnerabilities(w http.ResponseWriter, r *http.Request) error {
	rep, err := s.vulns.Host(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// scanFinding and scanResult are the image scan answer of the product
// notes, per host: one entry per open (unmuted) CVE and package.
type scanFinding struct {
	CVE              string `json:"cve"`
	Severity         string `json:"severity"`
	Description      string `json:"description"`
	FixVersion       string `json:"fix_version"`
	Package          string `json:"package"`
	InstalledVersion string `json:"installed_version"`
	AdvisoryID       string `json:"advisory_id"`
}

type scanResult struct {
	VulnerabilitiesFound int           `json:"vulnerabilities_found"`
	ScanTime             time.Time     `json:"scan_time"`
	Vulnerabilities      []scanFinding `json:"vulnerabilities"`
}

// handleHostScan serves GET /api/v1/hosts/{id}/scan.
func (s *server) handleHostScan(w http.ResponseWriter, r *http.Request) error {
	rep, err := s.vulns.Host(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	out := scanResult{ScanTime: rep.ScannedAt, Vulnerabilities: []scanFinding{}}
	seen := map[[2]string]bool{}
	for _, f := range rep.Findings {
		if f.Muted {
			continue
		}
		ids := f.CVEs
		if len(ids) == 0 {
			ids = []string{f.AdvisoryID}
		}
		for _, id := range ids {
			k := [2]string{id, f.Package}
			if seen[k] {
				continue
			}
			seen[k] = true
			out.Vulnerabilities = append(out.Vulnerabilities, scanFinding{
				CVE: id, Severity: f.Severity.Level, Description: f.Summary, FixVersion: f.FixedVersion,
				Package: f.Package, InstalledVersion: f.InstalledVersion, AdvisoryID: f.AdvisoryID,
			})
		}
	}
	out.VulnerabilitiesFound = len(out.Vulnerabilities)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// muteRequest is the body of POST /api/v1/vulnerabilities/mutes.
type muteRequest struct {
	HostID        string `json:"host_id,omitempty"`
	Vulnerability string `json:"vulnerability"`
	Package       string `json:"package,omitempty"`
	Justification string `json:"justification"`
	// Until or TTL (a Go duration such as "720h") sets the expiry.
	Until time.Time `json:"until,omitzero"`
	TTL   string    `json:"ttl,omitempty"`
}

// handleCreateMute serves POST /api/v1/vulnerabilities/mutes.
func (s *server) handleCreateMute(w http.ResponseWriter, r *http.Request) error {
	var req muteRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	now := s.now().UTC()
	if err := validName("vulnerability", req.Vulnerability); err != nil {
		return err
	}
	if req.Package != "" {
		if err := validName("package", req.Package); err != nil {
			return err
		}
	}
	if strings.TrimSpace(req.Justification) == "" || len(req.Justification) > maxJustifyBytes {
		return badRequest("justification is required, at most %d bytes", maxJustifyBytes)
	}
	until := req.Until
	switch {
	case req.TTL != "" && !until.IsZero():
		return badRequest("give until or ttl, not both")
	case req.TTL != "":
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return badRequest("ttl must be a positive duration such as 720h")
		}
		until = now.Add(d)
	case until.IsZero():
		return badRequest("until or ttl is required: a mute must expire")
	}
	if !until.After(now) || until.Sub(now) > maxMuteTTL {
		return badRequest("the mute must expire in the future, within %s", maxMuteTTL)
	}
	if req.HostID != "" {
		if _, err := s.store.GetHost(r.Context(), req.HostID); err != nil {
			return fmt.Errorf("host %s: %w", req.HostID, err)
		}
	}
	id := make([]byte, 10)
	_, _ = rand.Read(id)
	m := &store.Mute{
		ID:     "mute-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(id)),
		HostID: req.HostID, Vulnerability: req.Vulnerability, Package: req.Package,
		Justification: req.Justification, Until: until.UTC(), CreatedBy: actor(r.Context()), CreatedAt: now,
	}
	if err := s.store.PutMute(r.Context(), m); err != nil {
		return err
	}
	if err := s.audit(r, "vulnerability.mute", m.ID, m); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

// handleListMutes serves GET /api/v1/vulnerabilities/mutes.
func (s *server) handleListMutes(w http.ResponseWriter, r *http.Request) error {
	mutes, err := s.store.ListMutes(r.Context())
	if err != nil {
		return err
	}
	if mutes == nil {
		mutes = []*store.Mute{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"mutes": mutes})
	return nil
}

// handleDeleteMute serves DELETE /api/v1/vulnerabilities/mutes/{id}.
func (s *server) handleDeleteMute(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.store.DeleteMute(r.Context(), id); err != nil {
		return err
	}
	if err := s.audit(r, "vulnerability.unmute", id, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": id})
	return nil
}
