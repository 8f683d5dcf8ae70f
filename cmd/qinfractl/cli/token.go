package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"time"
)

// runToken runs `token create|list`.
func runToken(c *cli, args []string) error {
	v, rest, err := c.verb("token", args, "create", "list")
	if err != nil {
		return err
	}
	if v == "create" {
		return tokenCreate(c, rest)
	}
	return tokenList(c, rest)
}

// createdToken is the API's answer to a token creation.
type createdToken struct {
	Token       string            `json:"token"`
	ID          string            `json:"id"`
	ExpiresAt   time.Time         `json:"expires_at"`
	UsesAllowed int               `json:"uses_allowed"`
	Labels      map[string]string `json:"labels"`
	Description string            `json:"description"`
}

// serverInfoResp is GET /api/v1/server-info.
type serverInfoResp struct {
	CAFingerprint string `json:"ca_fingerprint"`
	GRPCAddress   string `json:"grpc_address"`
	Version       string `json:"version"`
}

// tokenCreate runs `token create [--uses N] [--ttl D] [--label k=v ...]
// [--description D]`.
func tokenCreate(c *cli, args []string) error {
	fs := c.flagSet("token create", "[--uses N] [--ttl 1h] [--label key=value ...] [--description TEXT]")
	uses := fs.Int("uses", 1, "how many hosts may enroll with the token")
	ttl := fs.String("ttl", "1h", "how long the token is valid (Go `duration`, at most 720h)")
	var labels stringList
	fs.Var(&labels, "label", "`key=value` label given to hosts enrolling with the token (repeatable)")
	desc := fs.String("description", "", "what the token is for")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("token create takes no arguments, got %q", pos[0])
	}
	lm, err := parseLabelArgs(labels)
	if err != nil {
		return err
	}
	// Only flags the user gave are sent, so the server's defaults (its
	// configured TTL) apply otherwise.
	req := map[string]any{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "uses":
			req["uses"] = *uses
		case "ttl":
			req["ttl"] = *ttl
		case "description":
			req["description"] = *desc
		}
	})
	if len(lm) > 0 {
		req["labels"] = lm
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", "/api/v1/enrollment-tokens", nil, req, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var t createdToken
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode token: %w", err)
	}
	// The enroll hint needs the server's gRPC address and CA fingerprint;
	// without them the token is still good, so a failure here only costs
	// placeholders.
	var info serverInfoResp
	if err := cl.call(c.ctx, "GET", "/api/v1/server-info", nil, nil, &info); err != nil {
		fmt.Fprintf(c.stderr, "qinfractl: warning: could not read server info for the enroll command: %v\n", err)
	}

	w := c.stdout
	fmt.Fprintf(w, "Enrollment token created. It is shown only now; store it safely:\n\n")
	fmt.Fprintf(w, "    %s\n\n", clean(t.Token))
	tw := table(w)
	row(tw, "ID:", t.ID)
	row(tw, "Expires:", fmt.Sprintf("%s (%s)", t.ExpiresAt.Local().Format(time.RFC3339), relTime(t.ExpiresAt, c.now())))
	row(tw, "Uses:", strconv.Itoa(t.UsesAllowed))
	row(tw, "Labels:", formatLabels(t.Labels))
	if t.Description != "" {
		row(tw, "Description:", t.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nEnroll a host with:\n\n    qinfra-agent enroll --server %s --token %s --ca-fingerprint %s\n",
		clean(orPlaceholder(info.GRPCAddress, "<server:port>")), clean(t.Token),
		clean(orPlaceholder(info.CAFingerprint, "<ca-fingerprint>")))
	return nil
}

func orPlaceholder(v, placeholder string) string {
	if v == "" {
		return placeholder
	}
	return v
}

// tokenList runs `token list`.
func tokenList(c *cli, args []string) error {
	pos, err := parse(c.flagSet("token list", ""), args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("token list takes no arguments, got %q", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", "/api/v1/enrollment-tokens", nil, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var resp struct {
		Tokens []struct {
			ID          string            `json:"id"`
			Description string            `json:"description"`
			Labels      map[string]string `json:"labels"`
			UsesAllowed int               `json:"uses_allowed"`
			Used        int               `json:"used"`
			ExpiresAt   time.Time         `json:"expires_at"`
			CreatedBy   string            `json:"created_by"`
			State       string            `json:"state"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("decode tokens: %w", err)
	}
	now := c.now()
	tw := table(c.stdout)
	row(tw, "ID", "STATE", "USES", "EXPIRES", "LABELS", "CREATED BY", "DESCRIPTION")
	for _, t := range resp.Tokens {
		row(tw, t.ID, t.State, fmt.Sprintf("%d/%d", t.Used, t.UsesAllowed), relTime(t.ExpiresAt, now),
			formatLabels(t.Labels), orDash(t.CreatedBy), orDash(t.Description))
	}
	return tw.Flush()
}
