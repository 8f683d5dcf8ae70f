package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/baseline"
)

// runBaseline runs `baseline apply|capture|list|get|delete`.
func runBaseline(c *cli, args []string) error {
	v, rest, err := c.verb("baseline", args, "apply", "capture", "list", "get", "delete")
	if err != nil {
		return err
	}
	switch v {
	case "apply":
		return baselineApply(c, rest)
	case "capture":
		return baselineCapture(c, rest)
	case "list":
		return baselineList(c, rest)
	case "get":
		return baselineGet(c, rest)
	}
	return baselineDelete(c, rest)
}

// baselinePut is the API's answer to apply and capture.
type baselinePut struct {
	Created  bool               `json:"created"`
	Baseline *baseline.Baseline `json:"baseline"`
}

func (c *cli) printPut(raw json.RawMessage) error {
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var p baselinePut
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("decode baseline: %w", err)
	}
	if p.Created {
		fmt.Fprintf(c.stdout, "baseline %s version %d stored\n", clean(p.Baseline.Name), p.Baseline.Version)
	} else {
		fmt.Fprintf(c.stdout, "baseline %s unchanged (version %d)\n", clean(p.Baseline.Name), p.Baseline.Version)
	}
	return nil
}

// baselineApply runs `baseline apply -f FILE` (YAML or JSON, checked here
// first so mistakes are reported with the file's own line numbers).
func baselineApply(c *cli, args []string) error {
	fs := c.flagSet("baseline apply", "-f FILE")
	file := fs.String("f", "", "baseline document, YAML or JSON (- for stdin)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *file == "" {
		return usagef("baseline apply takes -f FILE and no arguments")
	}
	var data []byte
	if *file == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	} else {
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	b, err := baseline.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", "/api/v1/baselines", nil, b, &raw); err != nil {
		return err
	}
	return c.printPut(raw)
}

// baselineCapture runs `baseline capture --host ID --name NAME [--kinds
// package,file,user,service] [--minimum] [--selector k=v ...]`.
func baselineCapture(c *cli, args []string) error {
	fs := c.flagSet("baseline capture", "--host ID --name NAME [--kinds package,file,user,service] [--minimum] [--selector key=value ...] [--image IMAGE] [--priority N]")
	host := fs.String("host", "", "reference host `ID`")
	name := fs.String("name", "", "baseline `name`, e.g. ubuntu-22.04-web")
	kinds := fs.String("kinds", "", "comma-separated kinds to capture (default all)")
	minimum := fs.Bool("minimum", false, "turn exact versions into minimum versions")
	image := fs.String("image", "", "golden image the reference host was built from")
	priority := fs.Int("priority", 0, "precedence over other baselines matching the same hosts")
	var sel stringList
	fs.Var(&sel, "selector", "`key=value` label the baseline's hosts have (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *host == "" || *name == "" {
		return usagef("baseline capture needs --host and --name, and takes no arguments")
	}
	sm, err := parseLabelArgs(sel)
	if err != nil {
		return err
	}
	req := map[string]any{"host_id": *host, "name": *name, "minimum_versions": *minimum, "image": *image, "priority": *priority}
	if *kinds != "" {
		req["kinds"] = strings.Split(*kinds, ",")
	}
	if len(sm) > 0 {
		req["selector"] = sm
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "POST", "/api/v1/baselines/capture", nil, req, &raw); err != nil {
		return err
	}
	return c.printPut(raw)
}

// baselineList runs `baseline list`.
func baselineList(c *cli, args []string) error {
	pos, err := parse(c.flagSet("baseline list", ""), args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("baseline list takes no arguments")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", "/api/v1/baselines", nil, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var r struct {
		Baselines []*baseline.Baseline `json:"baselines"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode baselines: %w", err)
	}
	tw := table(c.stdout)
	row(tw, "NAME", "VERSION", "PRIORITY", "SELECTOR", "PACKAGES", "FILES", "SERVICES", "IMAGE")
	for _, b := range r.Baselines {
		row(tw, b.Name, strconv.Itoa(b.Version), strconv.Itoa(b.Priority), formatLabels(b.Selector),
			strconv.Itoa(len(b.Packages)), strconv.Itoa(len(b.Files)), strconv.Itoa(len(b.Services)), b.Metadata.Image)
	}
	return tw.Flush()
}

// baselineGet runs `baseline get NAME [--version N]`, printing YAML unless
// -o json.
func baselineGet(c *cli, args []string) error {
	fs := c.flagSet("baseline get", "NAME [--version N]")
	version := fs.Int("version", 0, "version (default the latest)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("baseline get takes one NAME")
	}
	q := url.Values{}
	if *version > 0 {
		q.Set("version", strconv.Itoa(*version))
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.call(c.ctx, "GET", "/api/v1/baselines/"+url.PathEscape(pos[0]), q, nil, &raw); err != nil {
		return err
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, raw)
	}
	var b baseline.Baseline
	if err := json.Unmarshal(raw, &b); err != nil {
		return fmt.Errorf("decode baseline: %w", err)
	}
	y, err := b.YAML()
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(y)
	return err
}

// baselineDelete runs `baseline delete NAME`.
func baselineDelete(c *cli, args []string) error {
	pos, err := parse(c.flagSet("baseline delete", "NAME"), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("baseline delete takes one NAME")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.call(c.ctx, "DELETE", "/api/v1/baselines/"+url.PathEscape(pos[0]), nil, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "baseline %s deleted\n", clean(pos[0]))
	return nil
}
