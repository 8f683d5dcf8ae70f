package versioncmp

import (
	"errors"
	"strings"
)

// rpm orders [epoch:]version[-release] strings as rpm 4.18 does: the EVR
// is split by rpmio/rpmver.c parseEVR and compared by rpmverCmp, each
// component with rpmio/rpmvercmp.c rpmvercmp. This is what rpm's Lua
// rpm.vercmp(), "rpm -q --qf" ordering, dnf and yum agree on.
type rpm struct{}

// rpmEVR is a split EVR. A missing epoch reads as "0"; a missing release
// (no '-') is distinct from an empty one ("1.0-") and sorts before it.
type rpmEVR struct {
	epoch, version, release string
	hasRelease              bool
}

// Compare implements Comparer. rpm refuses to compare the empty string; here
// it sorts before every version.
func (rpm) Compare(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return -1
	}
	if b == "" {
		return 1
	}
	ea, eb := parseEVR(a), parseEVR(b)
	if r := rpmvercmp(ea.epoch, eb.epoch); r != 0 {
		return r
	}
	if r := rpmvercmp(ea.version, eb.version); r != 0 {
		return r
	}
	switch {
	case ea.hasRelease && eb.hasRelease:
		return rpmvercmp(ea.release, eb.release)
	case ea.hasRelease:
		return 1
	case eb.hasRelease:
		return -1
	}
	return 0
}

// Valid implements Comparer. rpm compares any non-empty string; beyond that
// Valid rejects what rpmbuild never produces: white space and control
// characters, an empty version part, a non-numeric epoch.
func (rpm) Valid(v string) error {
	if v == "" {
		return errors.New("invalid rpm version: empty")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == 0x7f {
			return errors.New("invalid rpm version " + quote(v) + ": white space or control character")
		}
	}
	e := parseEVR(v)
	if e.version == "" {
		return errors.New("invalid rpm version " + quote(v) + ": empty version")
	}
	if e.hasRelease && e.release == "" {
		return errors.New("invalid rpm version " + quote(v) + ": empty release")
	}
	if strings.Contains(e.version, ":") {
		return errors.New("invalid rpm version " + quote(v) + ": epoch is not a number")
	}
	return nil
}

// parseEVR splits an EVR as rpm's parseEVR does: the epoch is the leading
// run of digits if a ':' follows it, the release what follows the last '-'
// after that run.
func parseEVR(evr string) rpmEVR {
	s := 0
	for s < len(evr) && isDigit(evr[s]) {
		s++
	}
	se := strings.LastIndexByte(evr[s:], '-')
	if se >= 0 {
		se += s
	}
	e := rpmEVR{epoch: "0"}
	rest := evr
	if s < len(evr) && evr[s] == ':' {
		if s > 0 {
			e.epoch = evr[:s]
		}
		rest = evr[s+1:]
		if se >= 0 {
			se -= s + 1
		}
	}
	if se >= 0 {
		e.version, e.release, e.hasRelease = rest[:se], rest[se+1:], true
	} else {
		e.version = rest
	}
	return e
}

func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// rpmvercmp is rpm's segment comparison: runs of digits compare as numbers
// (leading zeros dropped, longer wins), runs of letters as strings, a digit
// run beats a letter run, '~' sorts before everything including the end,
// '^' after the end but before anything else, and all other characters only
// separate segments.
func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && !isAlnum(a[i]) && a[i] != '~' && a[i] != '^' {
			i++
		}
		for j < len(b) && !isAlnum(b[j]) && b[j] != '~' && b[j] != '^' {
			j++
		}
		ca, cb := byteAt(a, i), byteAt(b, j)

		// Tilde sorts before everything else.
		if ca == '~' || cb == '~' {
			if ca != '~' {
				return 1
			}
			if cb != '~' {
				return -1
			}
			i++
			j++
			continue
		}

		// Caret is like tilde, except that the end of a string (the base
		// version) sorts before it.
		if ca == '^' || cb == '^' {
			if ca == 0 {
				return -1
			}
			if cb == 0 {
				return 1
			}
			if ca != '^' {
				return 1
			}
			if cb != '^' {
				return -1
			}
			i++
			j++
			continue
		}

		if ca == 0 || cb == 0 {
			break
		}

		si, sj := i, j
		isNum := isDigit(ca)
		if isNum {
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
		} else {
			for i < len(a) && isAlpha(a[i]) {
				i++
			}
			for j < len(b) && isAlpha(b[j]) {
				j++
			}
		}
		// One segment is numeric and the other alphabetic: numbers win.
		if sj == j {
			if isNum {
				return 1
			}
			return -1
		}
		sa, sb := a[si:i], b[sj:j]
		if isNum {
			sa = strings.TrimLeft(sa, "0")
			sb = strings.TrimLeft(sb, "0")
			if len(sa) != len(sb) {
				if len(sa) > len(sb) {
					return 1
				}
				return -1
			}
		}
		if r := strings.Compare(sa, sb); r != 0 {
			return r
		}
	}
	ca, cb := byteAt(a, i), byteAt(b, j)
	if ca == 0 && cb == 0 {
		return 0
	}
	if ca != 0 {
		return 1
	}
	return -1
}

// byteAt returns s[i], or 0 past the end as a C string would.
func byteAt(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}
