package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/quantumlayer/qinfra/pkg/baseline"
)

// keyID7 is the ID the key of drift 7 implies, as the backends make it.
const keyID7 = "d-7"

// TestDriftCodecFieldCounts fails when a field is added to a struct the
// drift codec encodes, so that the field is not silently dropped from the
// drift bucket.
func TestDriftCodecFieldCounts(t *testing.T) {
	for _, c := range []struct {
		typ  reflect.Type
		want int
	}{
		{reflect.TypeFor[Drift](), 7}, // Deviation embedded counts as one
		{reflect.TypeFor[baseline.Deviation](), 10},
		{reflect.TypeFor[Acceptance](), 4},
	} {
		if n := c.typ.NumField(); n != c.want {
			t.Errorf("%s has %d fields, the drift codec (driftcodec.go) encodes %d: encode the new field under a new field number in EncodeDrift and decodeDriftV1, then update this count", c.typ, n, c.want)
		}
	}
}

var timeType = reflect.TypeFor[time.Time]()

// driftLeaves returns the index paths of every field of typ to be filled
// (strings, ints, times), embedded and pointed-to structs descended into.
// It fails for a field of a kind the codec does not encode.
func driftLeaves(t testing.TB, typ reflect.Type, prefix []int, name string) [][]int {
	var out [][]int
	for i := range typ.NumField() {
		f := typ.Field(i)
		path := append(append([]int(nil), prefix...), i)
		fname := name + "." + f.Name
		if !f.IsExported() {
			t.Fatalf("%s is not exported: JSON did not store it, and the drift codec does not know it", fname)
		}
		ft := f.Type
		switch {
		case ft == timeType:
			out = append(out, path)
		case ft.Kind() == reflect.String, ft.Kind() == reflect.Int:
			out = append(out, path)
		case ft.Kind() == reflect.Struct:
			out = append(out, driftLeaves(t, ft, path, fname)...)
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
			out = append(out, driftLeaves(t, ft.Elem(), path, fname)...)
		default:
			t.Fatalf("%s is a %s, which the drift codec does not encode: encode it in driftcodec.go and teach driftLeaves and setLeaf", fname, ft)
		}
	}
	return out
}

// setLeaf sets the field at path in v (a struct) to a value that differs
// for each seed, allocating pointers on the way.
func setLeaf(v reflect.Value, path []int, seed int) {
	for _, i := range path {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(seed)*time.Hour + time.Duration(seed))))
	case v.Kind() == reflect.String:
		v.SetString(fmt.Sprintf("value %d \xff", seed)) // not UTF-8: kept as is
	case v.Kind() == reflect.Int:
		v.SetInt(-int64(seed) * 1e9)
	}
}

// fullDrift returns a drift with every field set, each to its own value.
func fullDrift(t testing.TB) *Drift {
	d := new(Drift)
	v := reflect.ValueOf(d).Elem()
	for i, path := range driftLeaves(t, v.Type(), nil, "Drift") {
		setLeaf(v, path, i+1)
	}
	return d
}

func roundTrip(t testing.TB, keyID string, d *Drift) *Drift {
	t.Helper()
	v, err := EncodeDrift(d, keyID)
	if err != nil {
		t.Fatalf("encode %+v: %v", d, err)
	}
	if v[0] != DriftCodecV1 {
		t.Fatalf("encoding starts with %#x", v[0])
	}
	got, err := DecodeDrift(v, keyID)
	if err != nil {
		t.Fatalf("decode %x: %v", v, err)
	}
	return got
}

// TestDriftCodecRoundTrip: every field, alone and all together, reads back
// as it was written.
func TestDriftCodecRoundTrip(t *testing.T) {
	full := fullDrift(t)
	if got := roundTrip(t, keyID7, full); !reflect.DeepEqual(got, full) {
		t.Fatalf("round trip of a full drift:\n got %+v %+v\nwant %+v %+v", got, got.Acceptance, full, full.Acceptance)
	}
	// Each field alone: nothing leaks into another field, nothing is
	// lost for being alone.
	typ := reflect.TypeFor[Drift]()
	for i, path := range driftLeaves(t, typ, nil, "Drift") {
		d := &Drift{ID: keyID7}
		setLeaf(reflect.ValueOf(d).Elem(), path, i+1)
		if got := roundTrip(t, keyID7, d); !reflect.DeepEqual(got, d) {
			t.Errorf("field %s alone: got %+v, want %+v", typ.FieldByIndex(path[:1]).Name, got, d)
		}
	}
	for name, d := range map[string]*Drift{
		"zero":                {},
		"ID from key":         {ID: keyID7},
		"ID not from key":     {ID: "d-8"},
		"empty acceptance":    {ID: keyID7, Acceptance: &Acceptance{}},
		"negative version":    {Deviation: baseline.Deviation{BaselineVersion: -3}},
		"times beyond nanos":  {OpenedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), UpdatedAt: time.Date(1600, 5, 6, 7, 8, 9, 999999999, time.UTC), ResolvedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		"times at nano edges": {OpenedAt: minNanoTime.UTC(), UpdatedAt: maxNanoTime.UTC(), ResolvedAt: time.Unix(0, 0).UTC()},
		"acceptance forever":  {Acceptance: &Acceptance{Until: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), At: time.Date(1969, 12, 31, 23, 59, 59, 5, time.UTC)}},
	} {
		if got := roundTrip(t, keyID7, d); !reflect.DeepEqual(got, d) {
			t.Errorf("%s: got %+v, want %+v", name, got, d)
		}
	}
	// Times are stored in UTC: another location reads back as the same
	// instant in UTC, and a monotonic reading is dropped, as with JSON.
	cet := time.FixedZone("CET", 3600)
	local := &Drift{OpenedAt: time.Date(2026, 3, 1, 13, 0, 0, 5, cet), UpdatedAt: time.Now(), Acceptance: &Acceptance{Until: time.Date(3000, 1, 1, 0, 0, 0, 0, cet)}}
	got := roundTrip(t, "d-1", local)
	for _, p := range [][2]time.Time{{got.OpenedAt, local.OpenedAt}, {got.UpdatedAt, local.UpdatedAt}, {got.Acceptance.Until, local.Acceptance.Until}} {
		if !p[0].Equal(p[1]) || p[0].Location() != time.UTC || p[0] != p[1].Round(0).UTC() {
			t.Errorf("time %v read back as %v", p[1], p[0])
		}
	}
}

// TestDriftCodecSkipsUnknownFields: a field a later build adds is skipped.
func TestDriftCodecSkipsUnknownFields(t *testing.T) {
	full := fullDrift(t)
	v, err := EncodeDrift(full, keyID7)
	if err != nil {
		t.Fatal(err)
	}
	v = protowire.AppendTag(v, 99, protowire.BytesType)
	v = protowire.AppendString(v, "later")
	v = protowire.AppendTag(v, 100, protowire.VarintType)
	v = protowire.AppendVarint(v, 1<<40)
	v = protowire.AppendTag(v, 101, protowire.Fixed32Type)
	v = protowire.AppendFixed32(v, 5)
	got, err := DecodeDrift(v, keyID7)
	if err != nil || !reflect.DeepEqual(got, full) {
		t.Fatalf("with unknown fields: %+v, %v; want %+v", got, err, full)
	}
}

// oldJSON are drift values as builds before DriftCodecV1 wrote them
// (json.Marshal of Drift), with the drift they hold.
var oldJSON = []struct {
	json string
	want Drift
}{
	{
		`{"id":"d-3","host_id":"h1","baseline":"web","baseline_version":2,"drift_type":"version","severity":"high","action":"alert","kind":"package","key":"openssl","rule":"package_minimum","expected":"\u003e= 3.0","actual":"1.1","opened_at":"2026-03-01T12:00:00.123456789Z","updated_at":"2026-03-01T12:01:00Z","acceptance":{"justification":"vendor pinned","until":"2026-03-02T12:00:00Z","by":"ops","at":"2026-03-01T12:05:00Z"}}`,
		Drift{
			ID: "d-3", HostID: "h1",
			Deviation: baseline.Deviation{Baseline: "web", BaselineVersion: 2, Type: "version", Severity: "high", Action: "alert", Kind: "package", Key: "openssl", Rule: "package_minimum", Expected: ">= 3.0", Actual: "1.1"},
			OpenedAt:  time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC), UpdatedAt: time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC),
			Acceptance: &Acceptance{Justification: "vendor pinned", Until: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC), By: "ops", At: time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)},
		},
	},
	{
		`{"id":"d-4","host_id":"h2","baseline":"db","baseline_version":1,"drift_type":"missing","severity":"low","action":"","kind":"file","key":"/etc/motd","rule":"file_present","expected":"present","actual":"absent","opened_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T13:00:00Z","resolved_at":"2026-03-01T13:00:00Z"}`,
		Drift{
			ID: "d-4", HostID: "h2",
			Deviation: baseline.Deviation{Baseline: "db", BaselineVersion: 1, Type: "missing", Severity: "low", Kind: "file", Key: "/etc/motd", Rule: "file_present", Expected: "present", Actual: "absent"},
			OpenedAt:  time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC), ResolvedAt: time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC),
		},
	},
	{
		// Zero times, as JSON wrote them; an acceptance of zero values.
		`{"id":"","host_id":"","baseline":"","baseline_version":0,"drift_type":"","severity":"","action":"","kind":"","key":"","rule":"","expected":"","actual":"","opened_at":"0001-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z","acceptance":{"justification":"","until":"0001-01-01T00:00:00Z","by":"","at":"0001-01-01T00:00:00Z"}}`,
		Drift{Acceptance: &Acceptance{}},
	},
}

// TestDriftCodecReadsJSON: a JSON value reads as it always did, and what
// it read is written and read again unchanged in the binary form.
func TestDriftCodecReadsJSON(t *testing.T) {
	for i, c := range oldJSON {
		if b, err := json.Marshal(&c.want); err != nil || string(b) != c.json {
			t.Fatalf("%d: the old encoding of %+v is\n%s, %v; the test has\n%s", i, c.want, b, err, c.json)
		}
		got, err := DecodeDrift([]byte(c.json), "d-3")
		if err != nil || !reflect.DeepEqual(got, &c.want) {
			t.Fatalf("%d: decode = %+v, %v; want %+v", i, got, err, c.want)
		}
		var viaJSON Drift
		if err := json.Unmarshal([]byte(c.json), &viaJSON); err != nil || !reflect.DeepEqual(got, &viaJSON) {
			t.Fatalf("%d: decode = %+v; json.Unmarshal %+v, %v", i, got, viaJSON, err)
		}
		if again := roundTrip(t, "d-3", got); !reflect.DeepEqual(again, got) {
			t.Fatalf("%d: rewritten: %+v; want %+v", i, again, got)
		}
	}
}

// TestDriftCodecDamaged: damaged values are ErrCorruptDrift.
func TestDriftCodecDamaged(t *testing.T) {
	full, err := EncodeDrift(fullDrift(t), keyID7)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string][]byte{
		"empty":          nil,
		"unknown form":   {0x02, 0x0a, 0x00},
		"bad JSON":       []byte(`{"id":`),
		"truncated":      full[:len(full)-1],
		"bad tag":        {DriftCodecV1, 0x80},
		"field 0":        {DriftCodecV1, 0x02, 0x00},
		"wrong type":     append(protowire.AppendTag([]byte{DriftCodecV1}, dfHostID, protowire.VarintType), 1),
		"bad time":       append(protowire.AppendTag([]byte{DriftCodecV1}, dfOpenedAt, protowire.VarintType), 1),
		"nanos too big":  protowire.AppendBytes(protowire.AppendTag([]byte{DriftCodecV1}, dfOpenedAt, protowire.BytesType), protowire.AppendVarint([]byte{0}, 1e9)),
		"lone end group": protowire.AppendTag([]byte{DriftCodecV1}, 50, protowire.EndGroupType),
	} {
		if d, err := DecodeDrift(v, keyID7); !errors.Is(err, ErrCorruptDrift) {
			t.Errorf("%s: decode = %+v, %v; want ErrCorruptDrift", name, d, err)
		}
	}
}

// FuzzDecodeDrift: a damaged drift value is refused with ErrCorruptDrift,
// never a panic; what decodes is written in the binary form and reads
// back the same (times in UTC), and that form is a fixed point.
func FuzzDecodeDrift(f *testing.F) {
	for _, d := range []*Drift{fullDrift(f), {}, {ID: keyID7, Acceptance: &Acceptance{}},
		{OpenedAt: time.Date(1600, 1, 1, 0, 0, 0, 1, time.UTC)}} {
		v, err := EncodeDrift(d, keyID7)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	for _, c := range oldJSON {
		f.Add([]byte(c.json))
	}
	f.Add([]byte(`{"opened_at":"2026-03-01T13:00:00+01:00","acceptance":null}`))
	f.Add([]byte{DriftCodecV1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDrift(b, keyID7)
		if err != nil {
			if !errors.Is(err, ErrCorruptDrift) {
				t.Fatalf("error %v does not wrap ErrCorruptDrift", err)
			}
			return
		}
		v, err := EncodeDrift(d, keyID7)
		if err != nil {
			t.Fatalf("encode %+v: %v", d, err)
		}
		got, err := DecodeDrift(v, keyID7)
		if err != nil {
			t.Fatalf("decode of %x: %v", v, err)
		}
		want := *d
		want.OpenedAt, want.UpdatedAt, want.ResolvedAt = d.OpenedAt.UTC(), d.UpdatedAt.UTC(), d.ResolvedAt.UTC()
		if d.Acceptance != nil {
			a := *d.Acceptance
			a.Until, a.At = a.Until.UTC(), a.At.UTC()
			want.Acceptance = &a
		}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("decoded %+v, re-encoded %x, decoded %+v", d, v, got)
		}
		if v2, err := EncodeDrift(got, keyID7); err != nil || !bytes.Equal(v2, v) {
			t.Fatalf("encodings differ: %x, %x (%v)", v, v2, err)
		}
	})
}

// realisticDrift is a drift like the fleet benchmark's: a package version
// requirement of an image baseline.
func realisticDrift(host, pkg string, n uint64) *Drift {
	t := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return &Drift{
		ID: fmt.Sprintf("d-%d", n), HostID: host,
		Deviation: baseline.Deviation{
			Baseline: "img3", BaselineVersion: 4, Type: baseline.TypeVersion, Severity: baseline.SeverityHigh, Action: "alert",
			Kind: "package", Key: pkg + ":amd64", Rule: baseline.RulePackageMinimum, Expected: ">= 1.3.5-2", Actual: "1.3.5-1",
		},
		OpenedAt: t, UpdatedAt: t.Add(time.Hour),
	}
}

// TestDriftCodecSize reports the bytes of a drift value, JSON against
// binary, and fails if the binary form is not at most half the JSON.
func TestDriftCodecSize(t *testing.T) {
	d := realisticDrift("host-00042.example.net", "libssl3", 123456)
	js, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := EncodeDrift(d, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one drift value: JSON %d bytes, binary %d bytes", len(js), len(bin))
	if 2*len(bin) > len(js) {
		t.Errorf("binary %d bytes, JSON %d: want at most half", len(bin), len(js))
	}
}
