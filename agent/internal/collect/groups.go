package collect

import (
	"context"
	"io"
	"strconv"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

const groupPath = "/etc/group"

// groupsCollector reports the local groups of /etc/group.
type groupsCollector struct{}

func (groupsCollector) Name() string { return "groups" }

func (groupsCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	groups, found, err := readHostFile(h, groupPath, parseGroup)
	if err != nil || !found {
		return nil, err
	}
	items := make([]*commonv1.Item, 0, len(groups))
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		it, err := sealed(inventory.KindGroup, g.GetName(), g)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// parseGroup parses group(5) as glibc's files backend does: malformed lines
// are skipped, the first entry of a name wins, and the member list drops
// empty elements and leading blanks, keeping the order of the file.
func parseGroup(r io.Reader) ([]*commonv1.Group, error) {
	var groups []*commonv1.Group
	seen := map[string]bool{}
	err := eachLine(r, func(line string) {
		f := strings.Split(line, ":")
		if len(f) != 4 || f[0] == "" || seen[f[0]] {
			return
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return
		}
		seen[f[0]] = true
		g := &commonv1.Group{Name: f[0], Gid: uint32(gid)}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimLeft(m, " \t"); m != "" {
				g.Members = append(g.Members, m)
			}
		}
		groups = append(groups, g)
	})
	return groups, err
}
