package cli

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	iofs "io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// runVulnDB runs `vulndb import PATH` and `vulndb status`.
func runVulnDB(c *cli, args []string) error {
	if len(args) == 0 {
		return usagef("vulndb needs a subcommand: import PATH, status")
	}
	switch args[0] {
	case "import":
		return vulndbImport(c, args[1:])
	case "status":
		cl, err := c.client()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := cl.call(c.ctx, "GET", "/api/v1/vulndb", nil, nil, &raw); err != nil {
			return err
		}
		return printJSON(c.stdout, raw)
	}
	return usagef("unknown vulndb subcommand %q", args[0])
}

// vulndbImport sends PATH to the server: a .zip as is, a .json file as
// is, a directory as zips of its own and one zip, built while it is sent,
// of its .json files. Upload progress goes to stderr.
func vulndbImport(c *cli, args []string) error {
	fs := c.flagSet("vulndb import", "PATH")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("vulndb import takes one PATH: a directory of OSV .json records, an OSV .zip, or one .json file")
	}
	path := pos[0]
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	cl.http.Timeout = 0 // an import of a large archive takes minutes; ctx still cancels it
	if !info.IsDir() {
		ct := "application/json"
		if strings.EqualFold(filepath.Ext(path), ".zip") {
			ct = "application/zip"
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return c.sendImport(cl, path, ct, f, info.Size())
	}
	var zips, jsons []string
	err = filepath.WalkDir(path, func(p string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".zip":
			zips = append(zips, p)
		case ".json":
			jsons = append(jsons, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, z := range zips {
		f, err := os.Open(z)
		if err != nil {
			return err
		}
		fi, _ := f.Stat()
		err = c.sendImport(cl, z, "application/zip", f, fi.Size())
		f.Close()
		if err != nil {
			return err
		}
	}
	if len(jsons) == 0 {
		return nil
	}
	pr, pw := io.Pipe()
	go func() {
		zw := zip.NewWriter(pw)
		for _, p := range jsons {
			rel, _ := filepath.Rel(path, p)
			w, err := zw.Create(filepath.ToSlash(rel))
			if err == nil {
				var f *os.File
				if f, err = os.Open(p); err == nil {
					_, err = io.Copy(w, f)
					f.Close()
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(zw.Close())
	}()
	return c.sendImport(cl, fmt.Sprintf("%s (%d records)", path, len(jsons)), "application/zip", pr, -1)
}

// progressReader counts what was read.
type progressReader struct {
	r io.Reader
	n atomic.Int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	return n, err
}

func (c *cli) sendImport(cl *client, name, contentType string, body io.Reader, size int64) error {
	pr := &progressReader{r: body}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if size > 0 {
					fmt.Fprintf(c.stderr, "importing %s: %d%% sent\n", name, 100*pr.n.Load()/size)
				} else {
					fmt.Fprintf(c.stderr, "importing %s: %d KiB sent\n", name, pr.n.Load()>>10)
				}
			}
		}
	}()
	var rep struct {
		Files, Added, Updated, Unchanged, Withdrawn int
		Invalid                                     []struct{ Path, Reason string }
	}
	raw, err := cl.send(c.ctx, "POST", "/api/v1/vulndb/import", contentType, pr)
	close(stop)
	<-done
	if err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, json.RawMessage(raw))
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("decode import report: %w", err)
	}
	fmt.Fprintf(c.stdout, "%s: %d files, %d added, %d updated, %d unchanged, %d withdrawn, %d invalid\n",
		name, rep.Files, rep.Added, rep.Updated, rep.Unchanged, rep.Withdrawn, len(rep.Invalid))
	for _, iv := range rep.Invalid {
		fmt.Fprintf(c.stdout, "  invalid %s: %s\n", clean(iv.Path), clean(iv.Reason))
	}
	return nil
}

// send posts a raw body and returns the raw JSON answer.
func (cl *client) send(ctx context.Context, method, path, contentType string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, cl.base.JoinPath(path).String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", contentType)
	resp, err := cl.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return nil, &apiError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
		}
		return nil, &apiError{status: resp.StatusCode, code: "http", message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	return data, nil
}

// runVulns runs `vulns [--host ID] [--cve CVE]` and `vulns mute|unmute|mutes`.
func runVulns(c *cli, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "mute":
			return vulnsMute(c, args[1:])
		case "unmute":
			return vulnsUnmute(c, args[1:])
		case "mutes":
			cl, err := c.client()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := cl.call(c.ctx, "GET", "/api/v1/vulnerabilities/mutes", nil, nil, &raw); err != nil {
				return err
			}
			return printJSON(c.stdout, raw)
		}
	}
	fs := c.flagSet("vulns", "[--host ID] [--cve CVE] [--severity LEVEL] [--fixable]")
	host := fs.String("host", "", "show this host's findings")
	cve := fs.String("cve", "", "only this CVE")
	sev := fs.String("severity", "", "only this level: critical, high, medium, low")
	fixable := fs.Bool("fixable", false, "only vulnerabilities with a published fix")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("vulns takes no arguments, got %q", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if *host != "" {
		if err := checkID(*host); err != nil {
			return err
		}
		if err := cl.call(c.ctx, "GET", hostPath(*host, "vulnerabilities"), nil, nil, &raw); err != nil {
			return err
		}
		if c.g.output == "json" {
			return printJSON(c.stdout, raw)
		}
		var rep struct {
			Ecosystem, Reason string
			RiskScore         float64 `json:"risk_score"`
			Open, Muted       int
			Findings          []struct {
				Package          string
				InstalledVersion string   `json:"installed_version"`
				FixedVersion     string   `json:"fixed_version"`
				AdvisoryID       string   `json:"advisory_id"`
				CVEs             []string `json:"cves"`
				Severity         struct{ Level string }
				Muted            bool
			}
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("decode findings: %w", err)
		}
		fmt.Fprintf(c.stdout, "ecosystem %s, risk %.1f/100, %d open, %d muted %s\n", orDash(rep.Ecosystem), rep.RiskScore, rep.Open, rep.Muted, rep.Reason)
		tw := table(c.stdout)
		row(tw, "PACKAGE", "INSTALLED", "FIXED", "ADVISORY", "CVES", "SEVERITY", "MUTED")
		for _, f := range rep.Findings {
			if *cve != "" && !strings.Contains(strings.Join(f.CVEs, ","), *cve) {
				continue
			}
			row(tw, f.Package, f.InstalledVersion, orDash(f.FixedVersion), f.AdvisoryID, orDash(strings.Join(f.CVEs, ",")), f.Severity.Level, yesNo(f.Muted))
		}
		return tw.Flush()
	}
	q := url.Values{}
	if *cve != "" {
		q.Set("cve", *cve)
	}
	if *sev != "" {
		q.Set("severity", *sev)
	}
	if *fixable {
		q.Set("fixable", "true")
	}
	if err := cl.call(c.ctx, "GET", "/api/v1/vulnerabilities", q, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var rep struct {
		Hosts, Scored   int
		Mean            float64 `json:"mean_risk_score"`
		Max             float64 `json:"max_risk_score"`
		Vulnerabilities []struct {
			ID            string
			Level         string
			MaxScore      float64  `json:"max_score"`
			Packages      []string `json:"packages"`
			AffectedHosts int      `json:"affected_hosts"`
			MutedHosts    int      `json:"muted_hosts"`
			FixAvailable  bool     `json:"fix_available"`
		}
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("decode vulnerabilities: %w", err)
	}
	fmt.Fprintf(c.stdout, "%d hosts (%d scored), risk mean %.1f max %.1f\n", rep.Hosts, rep.Scored, rep.Mean, rep.Max)
	tw := table(c.stdout)
	row(tw, "ID", "SEVERITY", "SCORE", "HOSTS", "MUTED", "FIX", "PACKAGES")
	for _, v := range rep.Vulnerabilities {
		row(tw, v.ID, v.Level, strconv.FormatFloat(v.MaxScore, 'f', 1, 64), strconv.Itoa(v.AffectedHosts), strconv.Itoa(v.MutedHosts), yesNo(v.FixAvailable), strings.Join(v.Packages, ","))
	}
	return tw.Flush()
}

func vulnsMute(c *cli, args []string) error {
	fs := c.flagSet("vulns mute", "--cve ID [--host ID] [--package NAME] --justification TEXT --until DURATION")
	cve := fs.String("cve", "", "CVE or advisory ID to mute (required)")
	host := fs.String("host", "", "only on this host (default: fleet-wide)")
	pkg := fs.String("package", "", "only findings of this package")
	just := fs.String("justification", "", "why (required, audited)")
	until := fs.Duration("until", 0, "how long the mute lasts, e.g. 720h (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("vulns mute takes no arguments, got %q", pos[0])
	}
	if *cve == "" || *just == "" || *until <= 0 {
		return usagef("--cve, --justification and --until are required")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	body := map[string]string{"vulnerability": *cve, "host_id": *host, "package": *pkg, "justification": *just, "ttl": until.String()}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", "/api/v1/vulnerabilities/mutes", nil, body, &raw); err != nil {
		return err
	}
	return printJSON(c.stdout, raw)
}

func vulnsUnmute(c *cli, args []string) error {
	fs := c.flagSet("vulns unmute", "MUTE-ID")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("vulns unmute takes one mute ID")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	return cl.call(c.ctx, "DELETE", "/api/v1/vulnerabilities/mutes/"+url.PathEscape(pos[0]), nil, nil, nil)
}
