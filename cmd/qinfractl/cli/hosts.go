package cli

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// host is the API's host object, as far as the tables show it.
type host struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Labels       map[string]string `json:"labels"`
	EnrolledAt   time.Time         `json:"enrolled_at"`
	LastSeen     time.Time         `json:"last_seen"`
	Connected    bool              `json:"connected"`
	Revoked      bool              `json:"revoked"`
	RevokedAt    time.Time         `json:"revoked_at"`
	AgentVersion string            `json:"agent_version"`
	CertNotAfter time.Time         `json:"cert_not_after"`
	OS           *struct {
		OS              string `json:"os"`
		Platform        string `json:"platform"`
		PlatformVersion string `json:"platform_version"`
		PrettyName      string `json:"pretty_name"`
		KernelVersion   string `json:"kernel_version"`
		KernelArch      string `json:"kernel_arch"`
	} `json:"os"`
	Inventory struct {
		Items     int       `json:"items"`
		UpdatedAt time.Time `json:"updated_at"`
		NeedsFull bool      `json:"needs_full"`
	} `json:"inventory"`
	ItemCounts map[string]int `json:"item_counts"`
}

// osName is the host's OS in a few words.
func (h *host) osName() string {
	if h.OS == nil {
		return "-"
	}
	if h.OS.PrettyName != "" {
		return h.OS.PrettyName
	}
	return orDash(strings.TrimSpace(h.OS.Platform + " " + h.OS.PlatformVersion))
}

// runHosts runs `hosts list [--label k=v ...]`.
func runHosts(c *cli, args []string) error {
	if _, _, err := c.verb("hosts", args, "list"); err != nil {
		return err
	}
	fs := c.flagSet("hosts list", "[--label key=value ...]")
	var labels stringList
	fs.Var(&labels, "label", "only hosts with this `key=value` label (repeatable; all must match)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("hosts list takes no arguments, got %q", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for _, l := range labels {
		q.Add("label", l)
	}
	if c.g.output == "json" {
		var raw json.RawMessage
		if err := cl.call(c.ctx, "GET", "/api/v1/hosts", q, nil, &raw); err != nil {
			return err
		}
		return printJSON(c.stdout, raw)
	}
	var resp struct {
		Hosts []host `json:"hosts"`
	}
	if err := cl.call(c.ctx, "GET", "/api/v1/hosts", q, nil, &resp); err != nil {
		return err
	}
	tw := table(c.stdout)
	row(tw, "ID", "HOSTNAME", "OS", "CONNECTED", "LAST SEEN", "ITEMS", "LABELS")
	now := c.now()
	for _, h := range resp.Hosts {
		connected := yesNo(h.Connected)
		if h.Revoked {
			connected = "revoked"
		}
		row(tw, h.ID, orDash(h.Hostname), h.osName(), connected, relTime(h.LastSeen, now),
			strconv.Itoa(h.Inventory.Items), formatLabels(h.Labels))
	}
	return tw.Flush()
}
