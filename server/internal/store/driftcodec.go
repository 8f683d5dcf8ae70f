package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// A stored drift (a value of bboltstore's drift bucket, the doc column of
// pgstore's drift table) is either a JSON document, as builds before
// DriftCodecV1 wrote them (it starts with '{'), or DriftCodecV1 followed
// by the drift as protobuf wire format fields (protowire): every field of
// Drift, its embedded baseline.Deviation flattened into it, under the
// numbers below. Both kinds coexist: a drift is written in the binary form
// whenever it is next written, and JSON ones are read as ever.
//
// Fields at their zero value are left out, but for the ID (below) and the
// acceptance, which is a nested message present exactly when
// Drift.Acceptance is not nil. Strings are stored as their bytes. A time
// is stored in UTC, location-independent, with nanosecond precision: as
// fixed64 Unix nanoseconds when it has such, else (before 1678 or after
// 2262) as a bytes field holding its Unix seconds (zigzag varint) and
// nanoseconds (varint); it reads back in UTC. The zero time is left out
// and reads back as time.Time{}, as JSON's "0001-01-01T00:00:00Z" did.
//
// The ID is left out when it is the one the drift's storage key implies
// (the keyID given to EncodeDrift and DecodeDrift: "d-<n>" for drift
// number n, as both backends make IDs), and read back from the key.
//
// Fields a decoder does not know are skipped, so new fields can be added
// under new numbers; a number is never reused. A known field of the wrong
// wire type is corruption.
const DriftCodecV1 = 0x01

// Field numbers of a drift.
const (
	dfID              protowire.Number = 1
	dfHostID          protowire.Number = 2
	dfBaseline        protowire.Number = 3
	dfBaselineVersion protowire.Number = 4 // zigzag varint
	dfType            protowire.Number = 5
	dfSeverity        protowire.Number = 6
	dfAction          protowire.Number = 7
	dfKind            protowire.Number = 8
	dfKey             protowire.Number = 9
	dfRule            protowire.Number = 10
	dfExpected        protowire.Number = 11
	dfActual          protowire.Number = 12
	dfOpenedAt        protowire.Number = 13
	dfUpdatedAt       protowire.Number = 14
	dfResolvedAt      protowire.Number = 15
	dfAcceptance      protowire.Number = 16 // nested message, af* fields
)

// Field numbers of an acceptance.
const (
	afJustification protowire.Number = 1
	afUntil         protowire.Number = 2
	afBy            protowire.Number = 3
	afAt            protowire.Number = 4
)

// Times with Unix nanoseconds.
var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// EncodeDrift returns the DriftCodecV1 encoding of d, stored under a key
// that implies the ID keyID.
func EncodeDrift(d *Drift, keyID string) ([]byte, error) {
	dv := &d.Deviation
	size := 1 + 12*3 + len(d.HostID) + len(dv.Baseline) + len(dv.Type) + len(dv.Severity) + len(dv.Action) +
		len(dv.Kind) + len(dv.Key) + len(dv.Rule) + len(dv.Expected) + len(dv.Actual) + 12*2
	if d.Acceptance != nil {
		size += 2 + 2 + 12*2 + len(d.Acceptance.Justification) + len(d.Acceptance.By) + 10
	}
	b := make([]byte, 1, size)
	b[0] = DriftCodecV1
	if d.ID != keyID {
		b = protowire.AppendTag(b, dfID, protowire.BytesType)
		b = protowire.AppendString(b, d.ID)
	}
	b = appendString(b, dfHostID, d.HostID)
	b = appendString(b, dfBaseline, dv.Baseline)
	if dv.BaselineVersion != 0 {
		b = protowire.AppendTag(b, dfBaselineVersion, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeZigZag(int64(dv.BaselineVersion)))
	}
	b = appendString(b, dfType, dv.Type)
	b = appendString(b, dfSeverity, dv.Severity)
	b = appendString(b, dfAction, dv.Action)
	b = appendString(b, dfKind, dv.Kind)
	b = appendString(b, dfKey, dv.Key)
	b = appendString(b, dfRule, dv.Rule)
	b = appendString(b, dfExpected, dv.Expected)
	b = appendString(b, dfActual, dv.Actual)
	var err error
	for _, t := range []struct {
		num protowire.Number
		t   time.Time
	}{{dfOpenedAt, d.OpenedAt}, {dfUpdatedAt, d.UpdatedAt}, {dfResolvedAt, d.ResolvedAt}} {
		if b, err = appendTime(b, t.num, t.t); err != nil {
			return nil, err
		}
	}
	if a := d.Acceptance; a != nil {
		v := make([]byte, 0, 2*12+len(a.Justification)+len(a.By)+6)
		v = appendString(v, afJustification, a.Justification)
		if v, err = appendTime(v, afUntil, a.Until); err != nil {
			return nil, fmt.Errorf("acceptance: %w", err)
		}
		v = appendString(v, afBy, a.By)
		if v, err = appendTime(v, afAt, a.At); err != nil {
			return nil, fmt.Errorf("acceptance: %w", err)
		}
		b = protowire.AppendTag(b, dfAcceptance, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	return b, nil
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendTime appends t, if not zero, as the package comment says.
func appendTime(b []byte, num protowire.Number, t time.Time) ([]byte, error) {
	if t.IsZero() {
		return b, nil
	}
	if !t.Before(minNanoTime) && !t.After(maxNanoTime) {
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, uint64(t.UnixNano())), nil
	}
	sec, nsec := t.Unix(), t.Nanosecond()
	if !time.Unix(sec, int64(nsec)).Equal(t) {
		return nil, fmt.Errorf("time %s out of range", t)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeVarint(protowire.EncodeZigZag(sec))+protowire.SizeVarint(uint64(nsec))))
	b = protowire.AppendVarint(b, protowire.EncodeZigZag(sec))
	return protowire.AppendVarint(b, uint64(nsec)), nil
}

// ErrCorruptDrift is wrapped by DecodeDrift's errors: the stored drift is
// damaged or of an unknown encoding. A backend wraps its own corruption
// error around it where it has one.
var ErrCorruptDrift = errors.New("damaged drift value")

// DecodeDrift decodes a stored drift, a DriftCodecV1 encoding or a JSON
// document, stored under a key that implies the ID keyID. A value that is
// neither, or damaged, is an error wrapping ErrCorruptDrift.
func DecodeDrift(v []byte, keyID string) (*Drift, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCorruptDrift)
	}
	switch v[0] {
	case '{':
		d := new(Drift)
		if err := json.Unmarshal(v, d); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorruptDrift, err)
		}
		return d, nil
	case DriftCodecV1:
		return decodeDriftV1(v[1:], keyID)
	}
	return nil, fmt.Errorf("%w: unknown encoding %#02x", ErrCorruptDrift, v[0])
}

func decodeDriftV1(b []byte, keyID string) (*Drift, error) {
	d := &Drift{ID: keyID}
	dv := &d.Deviation
	err := eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		var s *string
		var t *time.Time
		switch num {
		case dfID:
			s = &d.ID
		case dfHostID:
			s = &d.HostID
		case dfBaseline:
			s = &dv.Baseline
		case dfType:
			s = &dv.Type
		case dfSeverity:
			s = &dv.Severity
		case dfAction:
			s = &dv.Action
		case dfKind:
			s = &dv.Kind
		case dfKey:
			s = &dv.Key
		case dfRule:
			s = &dv.Rule
		case dfExpected:
			s = &dv.Expected
		case dfActual:
			s = &dv.Actual
		case dfOpenedAt:
			t = &d.OpenedAt
		case dfUpdatedAt:
			t = &d.UpdatedAt
		case dfResolvedAt:
			t = &d.ResolvedAt
		}
		switch {
		case s != nil:
			return consumeString(num, typ, b, s)
		case t != nil:
			return consumeTime(num, typ, b, t)
		}
		switch num {
		case dfBaselineVersion:
			if typ != protowire.VarintType {
				return 0, wireTypeErr(num, typ)
			}
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, fieldErr(num, m)
			}
			v := protowire.DecodeZigZag(x)
			if int64(int(v)) != v {
				return 0, fmt.Errorf("%w: baseline version %d out of range", ErrCorruptDrift, v)
			}
			dv.BaselineVersion = int(v)
			return m, nil
		case dfAcceptance:
			if typ != protowire.BytesType {
				return 0, wireTypeErr(num, typ)
			}
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return 0, fieldErr(num, m)
			}
			a, err := decodeAcceptance(v)
			if err != nil {
				return 0, fmt.Errorf("acceptance: %w", err)
			}
			d.Acceptance = a
			return m, nil
		}
		return -1, nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func decodeAcceptance(b []byte) (*Acceptance, error) {
	a := new(Acceptance)
	err := eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case afJustification:
			return consumeString(num, typ, b, &a.Justification)
		case afBy:
			return consumeString(num, typ, b, &a.By)
		case afUntil:
			return consumeTime(num, typ, b, &a.Until)
		case afAt:
			return consumeTime(num, typ, b, &a.At)
		}
		return -1, nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// eachField calls f with each field of b, the value's bytes starting it;
// f returns how many bytes the value took, or -1 for a field it does not
// know, which is skipped. A later field of one number replaces an earlier.
func eachField(b []byte, f func(protowire.Number, protowire.Type, []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return fmt.Errorf("%w: tag: %w", ErrCorruptDrift, protowire.ParseError(m))
		}
		b = b[m:]
		m, err := f(num, typ, b)
		if err != nil {
			return err
		}
		if m < 0 {
			if m = protowire.ConsumeFieldValue(num, typ, b); m < 0 {
				return fieldErr(num, m)
			}
		}
		b = b[m:]
	}
	return nil
}

func consumeString(num protowire.Number, typ protowire.Type, b []byte, s *string) (int, error) {
	if typ != protowire.BytesType {
		return 0, wireTypeErr(num, typ)
	}
	v, m := protowire.ConsumeBytes(b)
	if m < 0 {
		return 0, fieldErr(num, m)
	}
	*s = string(v)
	return m, nil
}

func consumeTime(num protowire.Number, typ protowire.Type, b []byte, t *time.Time) (int, error) {
	switch typ {
	case protowire.Fixed64Type:
		x, m := protowire.ConsumeFixed64(b)
		if m < 0 {
			return 0, fieldErr(num, m)
		}
		*t = time.Unix(0, int64(x)).UTC()
		return m, nil
	case protowire.BytesType:
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return 0, fieldErr(num, m)
		}
		zsec, ms := protowire.ConsumeVarint(v)
		if ms < 0 {
			return 0, fieldErr(num, ms)
		}
		nsec, mn := protowire.ConsumeVarint(v[ms:])
		if mn < 0 {
			return 0, fieldErr(num, mn)
		}
		sec := protowire.DecodeZigZag(zsec)
		if ms+mn != len(v) || nsec >= 1e9 {
			return 0, fmt.Errorf("%w: field %d: bad time", ErrCorruptDrift, num)
		}
		if *t = time.Unix(sec, int64(nsec)).UTC(); t.Unix() != sec {
			return 0, fmt.Errorf("%w: field %d: time out of range", ErrCorruptDrift, num)
		}
		return m, nil
	}
	return 0, wireTypeErr(num, typ)
}

func wireTypeErr(num protowire.Number, typ protowire.Type) error {
	return fmt.Errorf("%w: field %d of wire type %d", ErrCorruptDrift, num, typ)
}

func fieldErr(num protowire.Number, m int) error {
	return fmt.Errorf("%w: field %d: %w", ErrCorruptDrift, num, protowire.ParseError(m))
}
