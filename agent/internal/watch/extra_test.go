package watch

import "testing"

// TestExtraPathsWatched: extra paths set while watching are watched at
// once, literally (a name with glob characters matches only itself), a
// files rescan is delivered once their watches are in place, and clearing
// them stops it.
func TestExtraPathsWatched(t *testing.T) {
	r := newHostRoot(t)
	r.write("etc/ssh/sshd_config", "a")
	r.write("etc/x/a[1]", "a")
	r.write("etc/x/a1", "a")
	rw := start(t, config(r, "files"), nil)
	r.write("etc/ssh/sshd_config", "b")
	rw.expectNone()

	rw.w.SetExtraPaths([]string{"/etc/ssh/sshd_config", "/etc/x/a[1]", "/etc/app/main.conf"})
	rw.expect("files")
	r.replace("etc/ssh/sshd_config", "c")
	rw.expect("files")
	r.write("etc/x/a1", "b")
	rw.expectNone()
	r.write("etc/x/a[1]", "b")
	rw.expect("files")

	rw.w.SetExtraPaths(nil)
	rw.expect("files")
	r.write("etc/ssh/sshd_config", "d")
	r.write("etc/x/a[1]", "c")
	rw.expectNone()
	// The configured paths are still watched.
	r.write("etc/app/main.conf", "b")
	rw.expect("files")
}

// TestExtraPathsBeforeRun: extra paths set before Run are watched from the
// start, even when they are all there is to watch for files.
func TestExtraPathsBeforeRun(t *testing.T) {
	r := newHostRoot(t)
	r.write("srv/extra.conf", "a")
	cfg := config(r, "files")
	cfg.WatchPaths = []string{}
	rw := startWith(t, cfg, nil, func(w *Watcher) { w.SetExtraPaths([]string{"/srv/extra.conf"}) })
	r.write("srv/extra.conf", "b")
	rw.expect("files")
}
