package collect

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

const passwdSample = `root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

alice:x:1000:1000:Alice Liddell,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
carol:x:1002:1002::/home/carol:/bin/sh
dave:x:1003:1003::/home/dave:/bin/sh
legacy::1004:1004:password field empty in passwd:/home/legacy:/bin/sh
oldhash:$1$abc$def:1005:1005::/:/bin/sh
star:*:1006:1006::/:/bin/sh
+nisuser::::::
-blocked::::::
bad-uid:x:abc:1::/:/bin/sh
short:x:1:1
alice:x:2000:2000:duplicate:/:/bin/false
`

const shadowSample = `root:$y$j9T$salt$hash:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
alice:!$6$salt$hash:19000:0:99999:7:::
bob::19000:0:99999:7:::
carol:!!:19000::::::
`

func TestParsePasswd(t *testing.T) {
	users, err := parsePasswd(strings.NewReader(passwdSample))
	if err != nil {
		t.Fatal(err)
	}
	shadow, err := parseShadow(strings.NewReader(shadowSample))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range users {
		got = append(got, fmt.Sprintf("%s %d %d %q %s %s %s", u.GetName(), u.GetUid(), u.GetGid(), u.GetGecos(), u.GetHome(), u.GetShell(),
			passwordState(u.GetPasswordState(), shadow, true, u.GetName())))
	}
	want := []string{
		`root 0 0 "root" /root /bin/bash set`,
		`daemon 1 1 "daemon" /usr/sbin /usr/sbin/nologin locked`,
		`alice 1000 1000 "Alice Liddell,,," /home/alice /bin/bash locked`,
		`bob 1001 1001 "" /home/bob /bin/sh empty`,
		`carol 1002 1002 "" /home/carol /bin/sh locked`,
		`dave 1003 1003 "" /home/dave /bin/sh none`,
		`legacy 1004 1004 "password field empty in passwd" /home/legacy /bin/sh empty`,
		`oldhash 1005 1005 "" / /bin/sh set`,
		`star 1006 1006 "" / /bin/sh locked`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if passwordState("x", nil, false, "root") != passwordUnknown {
		t.Error("unreadable shadow does not give unknown")
	}
}

func TestUsersCollector(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, passwdPath, passwdSample)
	writeFile(t, root, shadowPath, shadowSample)
	items, err := usersCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	if len(items) != 9 {
		t.Fatalf("got %d users, want 9", len(items))
	}
	alice := itemByKey(items, "alice").GetUser()
	want := &commonv1.User{Name: "alice", Uid: 1000, Gid: 1000, Gecos: "Alice Liddell,,,", Home: "/home/alice", Shell: "/bin/bash", PasswordState: "locked"}
	if !proto.Equal(alice, want) {
		t.Errorf("alice = %v, want %v", alice, want)
	}
	for _, it := range items {
		if s := it.GetUser().GetPasswordState(); strings.Contains(s, "$") || len(s) > 8 {
			t.Errorf("%s: password state %q looks like a hash", it.GetKey(), s)
		}
	}

	// Without a shadow file no account has an entry in it.
	if err := os.Remove(filepath.Join(root, shadowPath)); err != nil {
		t.Fatal(err)
	}
	items, err = usersCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if s := itemByKey(items, "root").GetUser().GetPasswordState(); s != passwordNone {
		t.Errorf("no shadow: root's state %q, want none", s)
	}
	// A shadow that cannot be read (here a directory) leaves it unknown.
	mkdir(t, root, shadowPath)
	items, err = usersCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if s := itemByKey(items, "root").GetUser().GetPasswordState(); s != passwordUnknown {
		t.Errorf("unreadable shadow: root's state %q, want unknown", s)
	}
	if s := itemByKey(items, "legacy").GetUser().GetPasswordState(); s != passwordEmpty {
		t.Errorf("unreadable shadow: legacy's state %q, want empty from passwd", s)
	}
}

// TestUsersMatchGetent compares the collector with getent on this machine
// (whose accounts come from /etc/passwd).
func TestUsersMatchGetent(t *testing.T) {
	out := command(t, "getent", "passwd")
	items, err := usersCollector{}.Collect(context.Background(), HostFS{Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		u := it.GetUser()
		got = append(got, fmt.Sprintf("%s:%d:%d:%s:%s:%s", u.GetName(), u.GetUid(), u.GetGid(), u.GetGecos(), u.GetHome(), u.GetShell()))
	}
	var want []string
	for _, l := range lines(out) {
		f := strings.Split(l, ":")
		want = append(want, strings.Join(append(f[:1:1], f[2:]...), ":"))
	}
	diffSets(t, "users", lines(strings.Join(want, "\n")), lines(strings.Join(got, "\n")))
}

func FuzzParsePasswd(f *testing.F) {
	f.Add(passwdSample)
	f.Add("a:x:1:2:::\n:x:1:1:::\n")
	f.Add("a:x:4294967296:1:::\n")
	f.Fuzz(func(t *testing.T, s string) {
		users, err := parsePasswd(strings.NewReader(s))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, u := range users {
			if u.GetName() == "" || seen[u.GetName()] || strings.Contains(u.GetName(), ":") {
				t.Fatalf("bad user %v", u)
			}
			seen[u.GetName()] = true
		}
	})
}

func FuzzParseShadow(f *testing.F) {
	f.Add(shadowSample)
	f.Add("a\nb:\nc:!\n")
	f.Fuzz(func(t *testing.T, s string) {
		states, err := parseShadow(strings.NewReader(s))
		if err != nil {
			return
		}
		for name, st := range states {
			switch st {
			case passwordSet, passwordEmpty, passwordLocked:
			default:
				t.Fatalf("%s: state %q", name, st)
			}
		}
	})
}
