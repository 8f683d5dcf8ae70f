package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// runAudit runs `audit [--after SEQ] [--limit N]`.
func runAudit(c *cli, args []string) error {
	fs := c.flagSet("audit", "[--after SEQ] [--limit N]")
	after := fs.Uint64("after", 0, "only entries after this sequence number")
	limit := fs.Int("limit", 100, "at most this many entries (1-1000)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("audit takes no arguments, got %q", pos[0])
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("--limit must be between 1 and 1000")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := url.Values{"after": {strconv.FormatUint(*after, 10)}, "limit": {strconv.Itoa(*limit)}}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", "/api/v1/audit", q, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var resp struct {
		Entries []struct {
			Seq    uint64    `json:"seq"`
			Time   time.Time `json:"time"`
			Actor  string    `json:"actor"`
			Action string    `json:"action"`
			Target string    `json:"target"`
			Detail string    `json:"detail"`
		} `json:"entries"`
		NextAfter uint64 `json:"next_after"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("decode audit: %w", err)
	}
	tw := table(c.stdout)
	row(tw, "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL")
	for _, e := range resp.Entries {
		row(tw, strconv.FormatUint(e.Seq, 10), e.Time.Local().Format(time.DateTime), e.Actor, e.Action, e.Target, orDash(e.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(resp.Entries) == *limit {
		fmt.Fprintf(c.stderr, "More entries may follow: qinfractl audit --after %d\n", resp.NextAfter)
	}
	return nil
}
