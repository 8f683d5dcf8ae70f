package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// inventoryPage is the size of each request, the server's maximum; a
// variable so the paging test need not store ten thousand items.
var inventoryPage = 10000

// item is an inventory item as the API encodes it: proto3 JSON bodies,
// 64-bit integers as strings.
type item struct {
	Kind    string `json:"kind"`
	Key     string `json:"key"`
	Hash    string `json:"hash"`
	Package *struct {
		Version string `json:"version"`
		Arch    string `json:"arch"`
		Status  string `json:"status"`
	} `json:"package"`
	File *struct {
		Type   string `json:"type"`
		Sha256 string `json:"sha256"`
		Mode   uint32 `json:"mode"`
		Owner  string `json:"owner"`
		Group  string `json:"group"`
		Error  string `json:"error"`
	} `json:"file"`
	User *struct {
		UID           uint32 `json:"uid"`
		Shell         string `json:"shell"`
		PasswordState string `json:"password_state"`
	} `json:"user"`
	Group *struct {
		GID     uint32   `json:"gid"`
		Members []string `json:"members"`
	} `json:"group"`
	Service *struct {
		UnitFileState string `json:"unit_file_state"`
		ActiveState   string `json:"active_state"`
		SubState      string `json:"sub_state"`
	} `json:"service"`
	OS *struct {
		PrettyName      string `json:"pretty_name"`
		Platform        string `json:"platform"`
		PlatformVersion string `json:"platform_version"`
	} `json:"os"`
}

// detail is the short column for an item: what an operator scans for.
func (it *item) detail() string {
	switch {
	case it.Package != nil:
		d := strings.TrimSpace(it.Package.Version + " " + it.Package.Arch)
		if it.Package.Status != "" && it.Package.Status != "installed" {
			d += " (" + it.Package.Status + ")"
		}
		return d
	case it.File != nil:
		f := it.File
		switch {
		case f.Error != "":
			return "error: " + f.Error
		case f.Type == "missing":
			return "missing"
		}
		d := fmt.Sprintf("%s %04o %s:%s", orDash(f.Type), f.Mode&0o7777, orDash(f.Owner), orDash(f.Group))
		if f.Sha256 != "" {
			d += " sha256:" + f.Sha256[:min(12, len(f.Sha256))]
		}
		return d
	case it.User != nil:
		return fmt.Sprintf("uid=%d shell=%s password=%s", it.User.UID, orDash(it.User.Shell), orDash(it.User.PasswordState))
	case it.Group != nil:
		d := fmt.Sprintf("gid=%d", it.Group.GID)
		if len(it.Group.Members) > 0 {
			d += " members=" + strings.Join(it.Group.Members, ",")
		}
		return d
	case it.Service != nil:
		d := orDash(it.Service.UnitFileState)
		if it.Service.ActiveState != "" {
			d += " " + it.Service.ActiveState
			if it.Service.SubState != "" {
				d += "/" + it.Service.SubState
			}
		}
		return d
	case it.OS != nil:
		if it.OS.PrettyName != "" {
			return it.OS.PrettyName
		}
		return strings.TrimSpace(it.OS.Platform + " " + it.OS.PlatformVersion)
	}
	return "-"
}

// hostInventory runs `host inventory ID [--kind K] [--q TEXT]`. It reads
// every page, so the table (or JSON) is the whole inventory.
func hostInventory(c *cli, args []string) error {
	fs := c.flagSet("host inventory", "ID [--kind KIND] [--q TEXT]")
	kind := fs.String("kind", "", "only items of this `kind`: "+strings.Join(knownKinds, ", "))
	search := fs.String("q", "", "only items whose key contains `text` (ignoring case)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := oneID("host inventory", pos)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var all struct {
		HostID string            `json:"host_id"`
		Kind   string            `json:"kind"`
		Count  int               `json:"count"`
		Items  []json.RawMessage `json:"items"`
	}
	for offset := 0; ; {
		q := url.Values{"limit": {strconv.Itoa(inventoryPage)}, "offset": {strconv.Itoa(offset)}}
		if *kind != "" {
			q.Set("kind", *kind)
		}
		if *search != "" {
			q.Set("q", *search)
		}
		var page struct {
			HostID string            `json:"host_id"`
			Kind   string            `json:"kind"`
			Count  int               `json:"count"`
			Items  []json.RawMessage `json:"items"`
		}
		if err := cl.call(c.ctx, "GET", hostPath(id, "inventory"), q, nil, &page); err != nil {
			return err
		}
		all.HostID, all.Kind, all.Count = page.HostID, page.Kind, page.Count
		all.Items = append(all.Items, page.Items...)
		offset += len(page.Items)
		// Stop at the end, and on an empty page in case the inventory shrank
		// between requests.
		if len(page.Items) == 0 || offset >= page.Count {
			break
		}
	}
	all.Count = len(all.Items)
	if all.Items == nil {
		all.Items = []json.RawMessage{}
	}
	if c.g.output == "json" {
		return printJSON(c.stdout, all)
	}

	items := make([]item, len(all.Items))
	counts := map[string]int{}
	for i, raw := range all.Items {
		if err := json.Unmarshal(raw, &items[i]); err != nil {
			return fmt.Errorf("decode item: %w", err)
		}
		counts[items[i].Kind]++
	}
	tw := table(c.stdout)
	row(tw, "KIND", "COUNT")
	for _, k := range kindOrder(counts) {
		row(tw, k, strconv.Itoa(counts[k]))
	}
	row(tw, "total", strconv.Itoa(len(items)))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	tw = table(c.stdout)
	row(tw, "KIND", "KEY", "DETAIL")
	for _, it := range items {
		row(tw, it.Kind, it.Key, it.detail())
	}
	return tw.Flush()
}
