package drift

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

var (
	benchHosts    = flag.Int("drift-hosts", 10000, "hosts of BenchmarkDriftRecompute")
	imagePackages = flag.Int("image-packages", 400, "packages of each simulated image")
)

func seal(it *commonv1.Item) *commonv1.Item {
	if err := inventory.Seal(it); err != nil {
		panic(err)
	}
	return it
}

func pkgItem(name, version string) *commonv1.Item {
	return seal(&commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
		Manager: "dpkg", Name: name, Version: version, Arch: "amd64", Status: "installed"}}})
}

// fileItem is a file whose content is n: its digest is as random as a
// real file's, which matters to what compresses.
func fileItem(path string, n int) *commonv1.Item {
	sum := sha256.Sum256(binary.AppendUvarint(nil, uint64(n)))
	return seal(&commonv1.Item{Kind: inventory.KindFile, Key: path, Body: &commonv1.Item_File{File: &commonv1.File{
		Path: path, Type: "file", Sha256: hex.EncodeToString(sum[:]), Mode: 0o644, Owner: "root", Group: "root"}}})
}

func userItem(name string, uid uint32) *commonv1.Item {
	return seal(&commonv1.Item{Kind: inventory.KindUser, Key: name, Body: &commonv1.Item_User{User: &commonv1.User{Name: name, Uid: uid, PasswordState: "locked"}}})
}

func serviceItem(name, state string) *commonv1.Item {
	return seal(&commonv1.Item{Kind: inventory.KindService, Key: name, Body: &commonv1.Item_Service{Service: &commonv1.Service{Manager: "systemd", Name: name, UnitFileState: state}}})
}

// image is a golden image's items: 400 packages (-image-packages), 20
// files, 25 users, 30 services.
func image(i int) []*commonv1.Item {
	var items []*commonv1.Item
	for p := range *imagePackages {
		items = append(items, pkgItem(fmt.Sprintf("pkg%03d", p), fmt.Sprintf("1.%d.%d-1", i, p)))
	}
	for f := range 20 {
		items = append(items, fileItem(fmt.Sprintf("/etc/app%d.conf", f), i*100+f))
	}
	for u := range 25 {
		items = append(items, userItem(fmt.Sprintf("user%02d", u), uint32(1000+u)))
	}
	for s := range 30 {
		state := "enabled"
		if s%3 == 0 {
			state = "disabled"
		}
		items = append(items, serviceItem(fmt.Sprintf("svc%02d.service", s), state))
	}
	return items
}

// hostItems is image img with 50 differences that depend on the host:
// 30 packages one patch behind, 10 files changed, 5 extra users, 5
// services flipped.
func hostItems(img []*commonv1.Item, imgNo, h int) []*commonv1.Item {
	items := make([]*commonv1.Item, len(img), len(img)+5)
	copy(items, img)
	np := *imagePackages
	for k := range 30 {
		p := (h*7 + k*13) % np
		items[p] = pkgItem(fmt.Sprintf("pkg%03d", p), fmt.Sprintf("1.%d.%d-0", imgNo, p))
	}
	for k := range 10 {
		f := (h + k) % 20
		items[np+f] = fileItem(fmt.Sprintf("/etc/app%d.conf", f), 1_000_000+h)
	}
	for k := range 5 {
		items = append(items, userItem(fmt.Sprintf("x%d-%d", h, k), uint32(5000+k)))
	}
	for k := range 5 {
		s := (h + k*6 + 1) % 30
		items[np+45+s] = serviceItem(fmt.Sprintf("svc%02d.service", s), "masked")
	}
	return items
}

// BenchmarkDriftRecompute: 10,000 hosts (-drift-hosts) from 5 images, each
// with ~50 differences from its image's baseline, their drift stored in
// bbolt. Each iteration edits all five baselines (one package's version
// requirement) and recomputes every host: the pure evaluation, then the
// store writes of what changed (every host gains or loses one drift).
func BenchmarkDriftRecompute(b *testing.B) {
	n := *benchHosts
	st, err := bboltstore.Open(filepath.Join(b.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := b.Context()
	const images = 5
	var bls []*baseline.Baseline
	imgs := make([][]*commonv1.Item, images)
	for i := range images {
		imgs[i] = image(i)
		bl := baseline.Capture(imgs[i], baseline.CaptureOptions{Name: fmt.Sprintf("img%d", i), Selector: map[string]string{"image": fmt.Sprintf("img%d", i)}})
		bls = append(bls, bl)
	}
	hosts := make([][]*commonv1.Item, n)
	labels := make([]map[string]string, n)
	for h := range n {
		hosts[h] = hostItems(imgs[h%images], h%images, h)
		labels[h] = map[string]string{"image": fmt.Sprintf("img%d", h%images)}
	}
	recompute := func(now time.Time) (evalDur, writeDur time.Duration, deviations, events int) {
		t0 := time.Now()
		all := make([]store.HostDeviations, n)
		for h := range n {
			ds := baseline.Evaluate(Matching(bls, labels[h]), hosts[h], nil)
			all[h] = store.HostDeviations{HostID: fmt.Sprintf("host-%05d", h), Deviations: ds}
			deviations += len(ds)
		}
		t1 := time.Now()
		for i := 0; i < n; i += batchSize {
			ev, err := st.ReplaceHostDrift(ctx, now, all[i:min(i+batchSize, n)]...)
			if err != nil {
				b.Fatal(err)
			}
			events += len(ev)
		}
		return t1.Sub(t0), time.Since(t1), deviations, events
	}
	start := time.Now()
	_, _, devs, ev := recompute(time.Now())
	b.Logf("setup: %d hosts, %d deviations (%.1f per host), %d drift opened in %s", n, devs, float64(devs)/float64(n), ev, time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for i := range b.N {
		// Edit: require a newer pkg005 on every image, or go back.
		for j, bl := range bls {
			bl.Packages[5].Version = fmt.Sprintf("1.%d.5-%d", j, 1+(i+1)%2)
			bl.Version++
		}
		evalDur, writeDur, devs, ev := recompute(time.Now())
		b.ReportMetric(evalDur.Seconds(), "eval-s")
		b.ReportMetric(writeDur.Seconds(), "write-s")
		b.ReportMetric(float64(ev), "changes")
		b.Logf("edit %d: evaluation %s, store writes %s (%d deviations, %d drift changes), total %s",
			i, evalDur.Round(time.Millisecond), writeDur.Round(time.Millisecond), devs, ev, (evalDur + writeDur).Round(time.Millisecond))
	}
}

// BenchmarkEvaluateHost is the pure evaluation of one host of
// BenchmarkDriftRecompute.
func BenchmarkEvaluateHost(b *testing.B) {
	img := image(0)
	bl := baseline.Capture(img, baseline.CaptureOptions{Name: "img0"})
	items := hostItems(img, 0, 7)
	bs := []*baseline.Baseline{bl}
	b.ReportAllocs()
	for b.Loop() {
		baseline.Evaluate(bs, items, nil)
	}
}
