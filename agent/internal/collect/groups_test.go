package collect

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

const groupSample = `root:x:0:
adm:x:4:syslog,alice
# comment
sudo:x:27:alice, bob,,carol
users:x:100:
nogid:x::alice
bad:x:abc:
short:x:1
adm:x:999:duplicate
`

func groupLine(name string, gid uint32, members []string) string {
	return fmt.Sprintf("%s:%d:%s", name, gid, strings.Join(members, ","))
}

func TestParseGroup(t *testing.T) {
	groups, err := parseGroup(strings.NewReader(groupSample))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range groups {
		got = append(got, groupLine(g.GetName(), g.GetGid(), g.GetMembers()))
	}
	want := []string{"root:0:", "adm:4:syslog,alice", "sudo:27:alice,bob,carol", "users:100:"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestGroupsCollector(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, groupPath, groupSample)
	items, err := groupsCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	if len(items) != 4 || itemByKey(items, "sudo") == nil {
		t.Errorf("got %v", items)
	}
}

// TestGroupsMatchGetent compares the collector with getent on this machine.
func TestGroupsMatchGetent(t *testing.T) {
	out := command(t, "getent", "group")
	items, err := groupsCollector{}.Collect(context.Background(), HostFS{Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		g := it.GetGroup()
		got = append(got, groupLine(g.GetName(), g.GetGid(), g.GetMembers()))
	}
	var want []string
	for _, l := range lines(out) {
		f := strings.Split(l, ":")
		want = append(want, f[0]+":"+f[2]+":"+f[3])
	}
	diffSets(t, "groups", lines(strings.Join(want, "\n")), lines(strings.Join(got, "\n")))
}

func FuzzParseGroup(f *testing.F) {
	f.Add(groupSample)
	f.Add("g:x:1:,,, a ,b\n")
	f.Fuzz(func(t *testing.T, s string) {
		groups, err := parseGroup(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, g := range groups {
			for _, m := range g.GetMembers() {
				if m == "" || strings.Contains(m, ",") {
					t.Fatalf("group %s: member %q", g.GetName(), m)
				}
			}
		}
	})
}
