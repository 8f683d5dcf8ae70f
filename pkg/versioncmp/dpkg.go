package versioncmp

import (
	"errors"
	"math"
	"strings"
)

// dpkg orders Debian versions, [epoch:]upstream_version[-debian_revision],
// as dpkg 1.21 does (lib/dpkg/version.c dpkg_version_compare and
// lib/dpkg/parsehelp.c parseversion).
type dpkg struct{}

// dpkgVersion is a parsed Debian version.
type dpkgVersion struct {
	epoch    int64
	upstream string
	revision string
}

// dpkgErr is a parse problem; warn marks the ones dpkg only warns about
// (it still compares such versions) as opposed to the ones it refuses.
type dpkgErr struct {
	msg  string
	warn bool
}

func (e *dpkgErr) Error() string { return e.msg }

// Compare implements Comparer. The empty string stands for "no version", as
// in dpkg --compare-versions, and sorts before every version. Like the C
// code, it reads a string only up to a NUL byte.
func (dpkg) Compare(a, b string) int {
	a, b = cString(a), cString(b)
	if a == b {
		return 0
	}
	if a == "" {
		return -1
	}
	if b == "" {
		return 1
	}
	va, _ := parseDpkg(a)
	vb, _ := parseDpkg(b)
	return compareDpkg(va, vb)
}

// Valid implements Comparer: it rejects what dpkg rejects and also what it
// only warns about (a version not starting with a digit, characters outside
// Debian policy's set), so a valid version is one dpkg accepts silently.
func (dpkg) Valid(v string) error {
	if strings.IndexByte(v, 0) >= 0 {
		return errors.New("invalid Debian version " + quote(v) + ": NUL byte")
	}
	_, err := parseDpkg(v)
	if err != nil {
		return errors.New("invalid Debian version " + quote(v) + ": " + err.msg)
	}
	return nil
}

func compareDpkg(a, b dpkgVersion) int {
	if a.epoch != b.epoch {
		if a.epoch > b.epoch {
			return 1
		}
		return -1
	}
	if r := verrevcmp(a.upstream, b.upstream); r != 0 {
		return r
	}
	return verrevcmp(a.revision, b.revision)
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// isSpace is C's isspace in the C locale, which strtol skips.
func isSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }

// parseDpkg parses v as parseversion does. It always returns the fields it
// found, even alongside an error, so that Compare has an answer for any
// string: dpkg itself compares versions it only warns about.
func parseDpkg(s string) (dpkgVersion, *dpkgErr) {
	var v dpkgVersion
	i := 0
	for i < len(s) && isBlank(s[i]) {
		i++
	}
	if i == len(s) {
		return v, &dpkgErr{msg: "version string is empty"}
	}
	end := i
	for end < len(s) && !isBlank(s[end]) {
		end++
	}
	j := end
	for j < len(s) && isBlank(s[j]) {
		j++
	}
	var fatal *dpkgErr
	if j < len(s) {
		fatal = &dpkgErr{msg: "version string has embedded spaces"}
	}
	str := s[i:end]
	if colon := strings.IndexByte(str, ':'); colon >= 0 {
		epoch, stop, neg, overflow := strtol(str)
		switch {
		case stop == 0:
			fatal = firstErr(fatal, "epoch in version is empty")
		case stop != colon:
			fatal = firstErr(fatal, "epoch in version is not number")
		case neg:
			fatal = firstErr(fatal, "epoch in version is negative")
		case overflow || epoch > math.MaxInt32:
			fatal = firstErr(fatal, "epoch in version is too big")
		case colon == len(str)-1:
			fatal = firstErr(fatal, "nothing after colon in version number")
		}
		if stop == colon && !neg {
			v.epoch = epoch
		}
		str = str[colon+1:]
	}
	v.upstream = str
	if h := strings.LastIndexByte(str, '-'); h >= 0 {
		v.upstream, v.revision = str[:h], str[h+1:]
		if v.revision == "" {
			fatal = firstErr(fatal, "revision number is empty")
		}
	}
	if v.upstream == "" {
		fatal = firstErr(fatal, "version number is empty")
	}
	if fatal != nil {
		return v, fatal
	}
	if !isDigit(v.upstream[0]) {
		return v, &dpkgErr{msg: "version number does not start with digit", warn: true}
	}
	for k := 1; k < len(v.upstream); k++ {
		c := v.upstream[k]
		if !isDigit(c) && !isAlpha(c) && strings.IndexByte(".-+~:", c) < 0 {
			return v, &dpkgErr{msg: "invalid character in version number", warn: true}
		}
	}
	for k := 0; k < len(v.revision); k++ {
		c := v.revision[k]
		if !isDigit(c) && !isAlpha(c) && strings.IndexByte(".+~", c) < 0 {
			return v, &dpkgErr{msg: "invalid character in revision number", warn: true}
		}
	}
	return v, nil
}

// cString cuts s at its first NUL byte, where C would see its end.
func cString(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

func firstErr(e *dpkgErr, msg string) *dpkgErr {
	if e != nil {
		return e
	}
	return &dpkgErr{msg: msg}
}

// strtol mimics C's strtol(s, &end, 10): it skips leading white space,
// takes an optional sign and the digits after it, and reports where it
// stopped (0 when it converted nothing), the sign, and overflow of a long.
func strtol(s string) (n int64, stop int, neg, overflow bool) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		d := int64(s[i] - '0')
		if n > (math.MaxInt64-d)/10 {
			overflow = true
		} else {
			n = n*10 + d
		}
		i++
	}
	if i == start {
		return 0, 0, false, false
	}
	if neg {
		// "-0" is zero, not negative: dpkg tests epoch < 0.
		neg = n != 0 || overflow
	}
	return n, i, neg, overflow
}

// dpkgOrder is dpkg's order(): digits and the end of the string weigh 0,
// letters their ASCII value, '~' sorts before everything (even the end),
// and every other byte after all letters. dpkg passes a plain char, signed
// on amd64, so a byte >= 0x80 weighs its unsigned value (c - 256 + 256):
// after the letters, before the ASCII punctuation. Valid versions never
// contain such bytes; the choice only keeps Compare equal to amd64's dpkg.
func dpkgOrder(c byte) int {
	switch {
	case isDigit(c):
		return 0
	case isAlpha(c):
		return int(c)
	case c == '~':
		return -1
	case c >= 0x80:
		return int(int8(c)) + 256
	case c != 0:
		return int(c) + 256
	}
	return 0
}

// verrevcmp compares an upstream version or a revision as dpkg does: an
// alternation of non-digit runs, compared byte by byte with dpkgOrder, and
// digit runs, compared as numbers of any length.
func verrevcmp(a, b string) int {
	i, j := 0, 0
	at := func(s string, k int) byte {
		if k < len(s) {
			return s[k]
		}
		return 0
	}
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := dpkgOrder(at(a, i)), dpkgOrder(at(b, j))
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return "\"" + s + "\""
}
