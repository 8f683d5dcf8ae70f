//go:build unix

package collect

import (
	"context"
	"sync"
	"testing"
)

// TestFilesExtraPaths: extra paths are reported besides the watch paths,
// literally (no glob expansion; a missing one as missing), once each, with
// the same protections as watched files; replacing them takes effect at the
// next collection, and SetExtraPaths may race with Collect.
func TestFilesExtraPaths(t *testing.T) {
	root := filesRoot(t)
	writeFile(t, root, "/etc/app/extra.conf", "extra = 1\n")
	writeFile(t, root, "/etc/app/a[1].conf", "bracket\n")
	writeFile(t, root, "/etc/app/a1.conf", "glob would match me\n")
	s := New(Config{Root: root, WatchPaths: []string{"/etc/app.conf"}, Disabled: otherThan("files")})
	collect := func() map[string]string {
		t.Helper()
		items, err := s.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		checkItems(t, items)
		out := map[string]string{}
		for _, it := range items {
			f := it.GetFile()
			out[f.GetPath()] = f.GetType() + ":" + f.GetSha256()
		}
		return out
	}
	if got := collect(); len(got) != 1 || got["/etc/app.conf"] == "" {
		t.Fatalf("before extra paths: %v", got)
	}

	if !s.SetExtraPaths([]string{"/etc/app/extra.conf", "/etc/app/a[1].conf", "/etc/missing.conf", "/etc/app.conf", "/etc/shadow"}) {
		t.Fatal("SetExtraPaths reports no files collector")
	}
	got := collect()
	want := map[string]string{
		"/etc/app.conf":       "file:" + sha256Hex([]byte("key = value\n")),
		"/etc/app/extra.conf": "file:" + sha256Hex([]byte("extra = 1\n")),
		"/etc/app/a[1].conf":  "file:" + sha256Hex([]byte("bracket\n")),
		"/etc/missing.conf":   "missing:",
		// Metadata only, whoever asks.
		"/etc/shadow": "file:",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %q, want %q", p, got[p], w)
		}
	}

	s.SetExtraPaths(nil)
	if got := collect(); len(got) != 1 {
		t.Fatalf("after clearing: %v", got)
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		for range 20 {
			s.SetExtraPaths([]string{"/etc/app/extra.conf"})
			s.SetExtraPaths(nil)
		}
	})
	for range 5 {
		collect()
	}
	wg.Wait()

	if New(Config{Root: root, Disabled: []string{"files"}}).SetExtraPaths([]string{"/etc/x"}) {
		t.Fatal("SetExtraPaths without a files collector must report false")
	}
}

// otherThan returns the names of the registered collectors but keep.
func otherThan(keep string) []string {
	var out []string
	for _, r := range registry() {
		if r.name != keep {
			out = append(out, r.name)
		}
	}
	return out
}
