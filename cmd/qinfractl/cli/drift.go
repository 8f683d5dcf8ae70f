package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
)

// runDrift runs `drift [summary]|host ID|detect|accept`.
func runDrift(c *cli, args []string) error {
	if len(args) == 0 || args[0] == "summary" || (len(args[0]) > 0 && args[0][0] == '-' && args[0] != "-h" && args[0] != "--help" && args[0] != "-help") {
		if len(args) > 0 && args[0] == "summary" {
			args = args[1:]
		}
		return driftSummary(c, args)
	}
	v, rest, err := c.verb("drift", args, "summary", "host", "detect", "accept")
	if err != nil {
		return err
	}
	switch v {
	case "host":
		return driftHost(c, rest)
	case "detect":
		return driftDetect(c, rest)
	}
	return driftAccept(c, rest)
}

// driftSummary runs `drift [summary] [--baseline B] [--type T] [--severity S]`.
func driftSummary(c *cli, args []string) error {
	fs := c.flagSet("drift", "[--baseline NAME] [--type TYPE] [--severity SEVERITY]")
	bl := fs.String("baseline", "", "only this baseline")
	typ := fs.String("type", "", "only this drift type")
	sev := fs.String("severity", "", "only this severity")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"baseline": *bl, "type": *typ, "severity": *sev} {
		if v != "" {
			q.Set(k, v)
		}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", "/api/v1/drift", q, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var r struct {
		Total    int                `json:"total_hosts"`
		Drifted  int                `json:"drifted_hosts"`
		Pct      float64            `json:"drift_percentage"`
		Open     int                `json:"open"`
		Accepted int                `json:"accepted"`
		ByType   map[string]int     `json:"by_type"`
		BySev    map[string]int     `json:"by_severity"`
		ByBase   map[string]int     `json:"by_baseline"`
		ByEnv    map[string]envLine `json:"by_environment"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode drift summary: %w", err)
	}
	w := c.stdout
	fmt.Fprintf(w, "%d of %d hosts drifted (%.2f%%); %d open deviations, %d accepted\n", r.Drifted, r.Total, r.Pct, r.Open, r.Accepted)
	for _, g := range []struct {
		title string
		m     map[string]int
	}{{"type", r.ByType}, {"severity", r.BySev}, {"baseline", r.ByBase}} {
		// row cleans control characters out of cells, a newline too.
		fmt.Fprintln(w)
		tw := table(w)
		row(tw, "BY "+upper(g.title), "OPEN")
		for _, k := range sortedMapKeys(g.m) {
			row(tw, k, strconv.Itoa(g.m[k]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	tw := table(w)
	row(tw, "ENVIRONMENT", "HOSTS", "DRIFTED", "DRIFT %")
	envs := make([]string, 0, len(r.ByEnv))
	for k := range r.ByEnv {
		envs = append(envs, k)
	}
	sort.Strings(envs)
	for _, k := range envs {
		e := r.ByEnv[k]
		row(tw, orPlaceholder(k, "(none)"), strconv.Itoa(e.Hosts), strconv.Itoa(e.Drifted), fmt.Sprintf("%.2f", e.Pct))
	}
	return tw.Flush()
}

type envLine struct {
	Hosts   int     `json:"hosts"`
	Drifted int     `json:"drifted"`
	Pct     float64 `json:"drift_percentage"`
}

func upper(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if 'a' <= ch && ch <= 'z' {
			b[i] = ch - 32
		}
	}
	return string(b)
}

func sortedMapKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// driftRow is one drift as the API shows it.
type driftRow struct {
	ID       string `json:"id"`
	HostID   string `json:"host_id"`
	Baseline string `json:"baseline"`
	Type     string `json:"drift_type"`
	Severity string `json:"severity"`
	Action   string `json:"action"`
	Rule     string `json:"rule"`
	Key      string `json:"key"`
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
	Status   string `json:"status"`
}

// driftHost runs `drift host ID [--all]`.
func driftHost(c *cli, args []string) error {
	fs := c.flagSet("drift host", "ID [--all]")
	all := fs.Bool("all", false, "include resolved drift")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("drift host takes one host ID")
	}
	q := url.Values{}
	if *all {
		q.Set("all", "true")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", "/api/v1/hosts/"+url.PathEscape(pos[0])+"/drift", q, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var r struct {
		Drift      []driftRow `json:"drift"`
		Unverified []struct {
			Baseline string `json:"baseline"`
			Path     string `json:"path"`
		} `json:"unverified"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode drift: %w", err)
	}
	tw := table(c.stdout)
	row(tw, "ID", "STATUS", "TYPE", "SEVERITY", "BASELINE", "RULE", "SUBJECT", "EXPECTED", "ACTUAL")
	for _, d := range r.Drift {
		row(tw, d.ID, d.Status, d.Type, d.Severity, d.Baseline, d.Rule, d.Key, d.Expected, d.Actual)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Unverified) > 0 {
		fmt.Fprintf(c.stdout, "\nNot checked: the agent does not report these files (not yet watched, or it refuses baseline paths):\n")
		tw = table(c.stdout)
		row(tw, "BASELINE", "PATH")
		for _, u := range r.Unverified {
			row(tw, u.Baseline, u.Path)
		}
		return tw.Flush()
	}
	return nil
}

// driftDetect runs `drift detect [--selector k=v ...]`.
func driftDetect(c *cli, args []string) error {
	fs := c.flagSet("drift detect", "[--selector key=value ...]")
	var sel stringList
	fs.Var(&sel, "selector", "`key=value` label of the hosts to check (repeatable; none: all)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	sm, err := parseLabelArgs(sel)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", "/api/v1/drift/detect", nil, map[string]any{"selector": sm}, &raw); err != nil {
		return err
	}
	return printJSON(c.stdout, raw)
}

// driftAccept runs `drift accept ID --justification TEXT (--ttl D | --until T)`.
func driftAccept(c *cli, args []string) error {
	fs := c.flagSet("drift accept", "ID --justification TEXT (--ttl 720h | --until RFC3339)")
	just := fs.String("justification", "", "why the deviation is acceptable")
	ttl := fs.String("ttl", "", "how long the acceptance lasts (Go `duration`)")
	until := fs.String("until", "", "when the acceptance ends (RFC 3339)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *just == "" || (*ttl == "") == (*until == "") {
		return usagef("drift accept takes one drift ID, --justification and one of --ttl, --until")
	}
	req := map[string]any{"justification": *just}
	if *ttl != "" {
		req["ttl"] = *ttl
	} else {
		req["until"] = *until
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", "/api/v1/drift/"+url.PathEscape(pos[0])+"/accept", nil, req, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	fmt.Fprintf(c.stdout, "drift %s accepted\n", clean(pos[0]))
	return nil
}
