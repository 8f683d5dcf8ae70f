package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runHost runs `host get|inventory|changes|revoke|label`.
func runHost(c *cli, args []string) error {
	v, rest, err := c.verb("host", args, "get", "inventory", "changes", "revoke", "label")
	if err != nil {
		return err
	}
	switch v {
	case "get":
		return hostGet(c, rest)
	case "inventory":
		return hostInventory(c, rest)
	case "changes":
		return hostChanges(c, rest)
	case "revoke":
		return hostRevoke(c, rest)
	default:
		return hostLabel(c, rest)
	}
}

// hostPath is the API path of a host, with the ID escaped: IDs come from
// the command line and must not walk to another endpoint.
func hostPath(id string, sub ...string) string {
	return "/api/v1/hosts/" + strings.Join(append([]string{url.PathEscape(id)}, sub...), "/")
}

func oneID(cmd string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", usagef("%s needs exactly one host ID", cmd)
	}
	return pos[0], checkID(pos[0])
}

// checkID refuses IDs that would not stay one path segment: "." and ".."
// survive escaping and would be resolved away by URL path cleaning.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." {
		return usagef("%q is not a host ID", id)
	}
	return nil
}

// hostGet runs `host get ID`.
func hostGet(c *cli, args []string) error {
	pos, err := parse(c.flagSet("host get", "ID"), args)
	if err != nil {
		return err
	}
	id, err := oneID("host get", pos)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", hostPath(id), nil, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var h host
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("decode host: %w", err)
	}
	c.printHost(&h)
	if len(h.ItemCounts) > 0 {
		fmt.Fprintln(c.stdout)
		tw := table(c.stdout)
		row(tw, "KIND", "COUNT")
		for _, k := range kindOrder(h.ItemCounts) {
			row(tw, k, strconv.Itoa(h.ItemCounts[k]))
		}
		return tw.Flush()
	}
	return nil
}

// printHost prints a host as aligned "Field: value" lines.
func (c *cli) printHost(h *host) {
	now := c.now()
	tw := table(c.stdout)
	row(tw, "ID:", h.ID)
	row(tw, "Hostname:", orDash(h.Hostname))
	row(tw, "OS:", h.osName())
	if h.OS != nil && h.OS.KernelVersion != "" {
		row(tw, "Kernel:", strings.TrimSpace(h.OS.KernelVersion+" "+h.OS.KernelArch))
	}
	row(tw, "Agent:", orDash(h.AgentVersion))
	row(tw, "Connected:", yesNo(h.Connected))
	row(tw, "Last seen:", relTime(h.LastSeen, now))
	row(tw, "Enrolled:", relTime(h.EnrolledAt, now))
	if !h.CertNotAfter.IsZero() {
		row(tw, "Cert expires:", relTime(h.CertNotAfter, now))
	}
	revoked := "no"
	if h.Revoked {
		revoked = "yes, " + relTime(h.RevokedAt, now)
	}
	row(tw, "Revoked:", revoked)
	row(tw, "Labels:", formatLabels(h.Labels))
	inv := fmt.Sprintf("%d items, updated %s", h.Inventory.Items, relTime(h.Inventory.UpdatedAt, now))
	if h.Inventory.NeedsFull {
		inv += " (awaiting a full resync)"
	}
	row(tw, "Inventory:", inv)
	_ = tw.Flush()
}

// kinds in the order the agent reports them; unknown kinds (a newer
// server) follow, sorted.
var knownKinds = []string{"os", "package", "user", "group", "service", "file"}

func kindOrder(counts map[string]int) []string {
	var out []string
	for _, k := range knownKinds {
		if _, ok := counts[k]; ok {
			out = append(out, k)
		}
	}
	var extra []string
	for k := range counts {
		if !slices.Contains(knownKinds, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// hostChanges runs `host changes ID [--since TIME] [--limit N]`: the
// host's timeline of inventory changes, oldest first.
func hostChanges(c *cli, args []string) error {
	fs := c.flagSet("host changes", "ID [--since TIME] [--limit N]")
	since := fs.String("since", "", "only changes at or after this RFC 3339 `time`, or this long ago (e.g. 24h)")
	limit := fs.Int("limit", 0, "at most `N` changes (server default 500)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := oneID("host changes", pos)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			d, derr := time.ParseDuration(*since)
			if derr != nil || d < 0 {
				return usagef("--since takes an RFC 3339 time or a duration such as 24h")
			}
			t = time.Now().Add(-d)
		}
		q.Set("since", t.UTC().Format(time.RFC3339))
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", hostPath(id, "changes"), q, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var resp struct {
		Changes []struct {
			Time    time.Time `json:"time"`
			Op      string    `json:"op"`
			Summary string    `json:"summary"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("decode changes: %w", err)
	}
	if len(resp.Changes) == 0 {
		fmt.Fprintln(c.stdout, "No inventory changes recorded.")
		return nil
	}
	tw := table(c.stdout)
	fmt.Fprintln(tw, "TIME\tOP\tCHANGE")
	for _, ch := range resp.Changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ch.Time.UTC().Format(time.RFC3339), clean(ch.Op), clean(ch.Summary))
	}
	return tw.Flush()
}

// revokeHost runs `host revoke ID`.
func hostRevoke(c *cli, args []string) error {
	pos, err := parse(c.flagSet("host revoke", "ID"), args)
	if err != nil {
		return err
	}
	id, err := oneID("host revoke", pos)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", hostPath(id, "revoke"), nil, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	fmt.Fprintf(c.stdout, "Host %s revoked: its agent is refused from now on and its stream was closed.\n", clean(id))
	return nil
}

// hostLabel runs `host label ID key=value ... key- ...`: like kubectl, a
// trailing '-' removes the label.
func hostLabel(c *cli, args []string) error {
	pos, err := parse(c.flagSet("host label", "ID key=value ... [key- ...]"), args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usagef("host label needs a host ID and at least one key=value or key-")
	}
	id := pos[0]
	if err := checkID(id); err != nil {
		return err
	}
	req := struct {
		Set    map[string]string `json:"set,omitempty"`
		Remove []string          `json:"remove,omitempty"`
	}{Set: map[string]string{}}
	for _, a := range pos[1:] {
		if k, ok := strings.CutSuffix(a, "-"); ok && !strings.Contains(a, "=") {
			req.Remove = append(req.Remove, k)
			continue
		}
		set, err := parseLabelArgs([]string{a})
		if err != nil {
			return err
		}
		for k, v := range set {
			req.Set[k] = v
		}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", hostPath(id, "labels"), nil, req, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var h host
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("decode host: %w", err)
	}
	fmt.Fprintf(c.stdout, "Host %s labels: %s\n", clean(h.ID), clean(formatLabels(h.Labels)))
	return nil
}
