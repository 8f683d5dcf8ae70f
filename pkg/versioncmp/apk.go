package versioncmp

import (
	"errors"
	"math"
)

// apk orders Alpine versions as apk-tools 2.x does (src/version.c,
// apk_version_compare_blob and apk_version_validate): a Gentoo-like
// {digit}{.digit}...{letter}{_suffix{#}}...{-r#}, where _alpha < _beta <
// _pre < _rc < (no suffix) < _cvs < _svn < _git < _hg < _p.
//
// apk-tools 2.x is what Alpine 3.x up to 3.22 ship. Its one surprise is
// kept: after a component that is exactly zero a suffix reads as more
// version, so "1.0_rc1" sorts after "1.0" (but "1.1_rc1" before "1.1").
// apk-tools 3, in Alpine 3.23 and later, rewrote this code.
type apk struct{}

// apk token types, in the order apk-tools gives them: a token may only be
// followed by one of a higher type, with the exceptions in apkNextToken.
const (
	apkInvalid = iota - 1
	apkDigitOrZero
	apkDigit
	apkLetter
	apkSuffix
	apkSuffixNo
	apkRevisionNo
	apkEnd
)

var (
	apkPreSuffixes  = [...]string{"alpha", "beta", "pre", "rc"}
	apkPostSuffixes = [...]string{"cvs", "svn", "git", "hg", "p"}
)

// Compare implements Comparer.
func (apk) Compare(a, b string) int {
	if a == b {
		return 0
	}
	at, bt := apkDigit, apkDigit
	var av, bv int64
	for at == bt && at != apkEnd && at != apkInvalid && av == bv {
		av, a = apkGetToken(&at, a)
		bv, b = apkGetToken(&bt, b)
	}
	// The value of this token differs.
	if av < bv {
		return -1
	}
	if av > bv {
		return 1
	}
	// Both ended, or both hit something invalid.
	if at == bt {
		return 0
	}
	// The leading components are equal: the one that goes on is greater,
	// unless what follows is a pre-release suffix.
	if at == apkSuffix {
		tt := at
		if v, _ := apkGetToken(&tt, a); v < 0 {
			return -1
		}
	}
	if bt == apkSuffix {
		tt := bt
		if v, _ := apkGetToken(&tt, b); v < 0 {
			return 1
		}
	}
	if at > bt {
		return -1
	}
	if bt > at {
		return 1
	}
	return 0
}

// Valid implements Comparer with apk_version_validate, except that the
// empty string, which apk-tools lets through, is refused.
func (apk) Valid(v string) error {
	if v == "" {
		return errors.New("invalid apk version: empty")
	}
	t, rest := apkDigit, v
	for t != apkEnd && t != apkInvalid {
		_, rest = apkGetToken(&t, rest)
	}
	if t != apkEnd {
		return errors.New("invalid apk version " + quote(v))
	}
	return nil
}

// apkNextToken reads the separator after a token and sets *t to the type
// of the token that follows, or apkInvalid.
func apkNextToken(t *int, s string) string {
	n := apkInvalid
	switch {
	case len(s) == 0 || s[0] == 0:
		n = apkEnd
	case (*t == apkDigit || *t == apkDigitOrZero) && isLower(s[0]):
		n = apkLetter
	case *t == apkLetter && isDigit(s[0]):
		n = apkDigit
	case *t == apkSuffix && isDigit(s[0]):
		n = apkSuffixNo
	default:
		switch s[0] {
		case '.':
			n = apkDigitOrZero
		case '_':
			n = apkSuffix
		case '-':
			if len(s) > 1 && s[1] == 'r' {
				n = apkRevisionNo
				s = s[1:]
			}
		}
		s = s[1:]
	}
	if n < *t {
		if !(n == apkDigitOrZero && *t == apkDigit ||
			n == apkSuffix && *t == apkSuffixNo ||
			n == apkDigit && *t == apkLetter) {
			n = apkInvalid
		}
	}
	*t = n
	return s
}

// apkGetToken reads one token of type *t from s, returns its value and the
// rest of s, and sets *t to the type of the next token.
func apkGetToken(t *int, s string) (int64, string) {
	if len(s) == 0 {
		*t = apkEnd
		return 0, s
	}
	var v int64
	i := 0
	nt := apkInvalid
	switch *t {
	case apkDigitOrZero, apkDigit, apkSuffixNo, apkRevisionNo:
		if *t == apkDigitOrZero && s[0] == '0' {
			// Leading zeros after a dot sort a component below any
			// without them: "1.01" < "1.1".
			for i < len(s) && s[i] == '0' {
				i++
			}
			nt = apkDigit
			v = -int64(i)
			break
		}
		for i < len(s) && isDigit(s[i]) {
			// apk-tools accumulates in a C int; numbers that long do not
			// occur in real versions, so saturate rather than wrap.
			if v < math.MaxInt64/10 {
				v = v*10 + int64(s[i]-'0')
			}
			i++
		}
	case apkLetter:
		v = int64(s[0])
		i = 1
	case apkSuffix:
		found := false
		for k, suf := range apkPreSuffixes {
			if len(suf) <= len(s) && s[:len(suf)] == suf {
				v, i, found = int64(k-len(apkPreSuffixes)), len(suf), true
				break
			}
		}
		if !found {
			for k, suf := range apkPostSuffixes {
				if len(suf) <= len(s) && s[:len(suf)] == suf {
					v, i, found = int64(k), len(suf), true
					break
				}
			}
		}
		if !found {
			*t = apkInvalid
			return -1, s
		}
	default:
		*t = apkInvalid
		return -1, s
	}
	s = s[i:]
	switch {
	case len(s) == 0:
		*t = apkEnd
	case nt != apkInvalid:
		*t = nt
	default:
		s = apkNextToken(t, s)
	}
	return v, s
}
