package collect

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// unitFile is what the inventory reads from a unit file or drop-in: its
// [Install] section, which decides the unit file state, and its description.
type unitFile struct {
	description     string
	aliases         []string
	wantedBy        []string
	requiredBy      []string
	upheldBy        []string
	also            []string
	defaultInstance string
}

// hasRules reports whether enabling the unit would create symlinks for it.
func (u *unitFile) hasRules() bool {
	return len(u.aliases) > 0 || len(u.wantedBy) > 0 || len(u.requiredBy) > 0 || len(u.upheldBy) > 0
}

// parseUnitFile parses a unit file the way systemd's config parser does for
// `systemctl enable`: sections in brackets, KEY=VALUE assignments, comments
// starting with # or ;, lines continued by a trailing backslash. Assignments
// to list settings append, and an empty one resets the list. Like systemd it
// ignores what it does not understand instead of failing, so a unit systemd
// accepts is never reported as broken here. Settings of u are updated in
// place, so drop-ins are parsed into the unit they extend.
func parseUnitFile(r io.Reader, u *unitFile, unitName string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	section := ""
	var cont strings.Builder
	continuing := false
	for sc.Scan() {
		raw := sc.Text()
		if continuing {
			// systemd skips comment lines inside a continuation.
			if t := strings.TrimLeft(raw, " \t"); t != "" && (t[0] == '#' || t[0] == ';') {
				continue
			}
		}
		if strings.HasSuffix(raw, "\\") {
			cont.WriteString(raw[:len(raw)-1])
			cont.WriteByte(' ')
			continuing = true
			continue
		}
		line := raw
		if continuing {
			cont.WriteString(raw)
			line = cont.String()
			cont.Reset()
			continuing = false
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if end := strings.IndexByte(line, ']'); end == len(line)-1 {
				section = line[1:end]
			} else {
				section = ""
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch section {
		case "Unit":
			if key == "Description" {
				u.description = value
			}
		case "Install":
			switch key {
			case "Alias":
				// systemd rejects Alias= for unit types that cannot be aliased.
				if unitTypeMayAlias(unitType(unitName)) {
					u.aliases = appendWords(u.aliases, value)
				}
			case "WantedBy":
				u.wantedBy = appendWords(u.wantedBy, value)
			case "RequiredBy":
				u.requiredBy = appendWords(u.requiredBy, value)
			case "UpheldBy":
				u.upheldBy = appendWords(u.upheldBy, value)
			case "Also":
				u.also = appendWords(u.also, value)
			case "DefaultInstance":
				if unitNameIs(unitName, nameTemplate) {
					u.defaultInstance = value
				}
			}
		}
	}
	if continuing {
		// A backslash on the last line continues into nothing; systemd keeps
		// what came before.
		return parseUnitFile(strings.NewReader(cont.String()), u, unitName)
	}
	return sc.Err()
}

// appendWords appends the whitespace-separated, possibly quoted words of v,
// or resets the list when v is empty.
func appendWords(list []string, v string) []string {
	if v == "" {
		return nil
	}
	for _, w := range splitQuoted(v) {
		if w != "" {
			list = append(list, w)
		}
	}
	return list
}

// splitQuoted splits v at unquoted whitespace, removing quotes.
func splitQuoted(v string) []string {
	var (
		words []string
		cur   strings.Builder
		quote byte
		in    bool
	)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\\' && i+1 < len(v):
			i++
			cur.WriteByte(v[i])
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// Kinds of unit names, as systemd's UNIT_NAME_PLAIN, _INSTANCE, _TEMPLATE.
const (
	namePlain = 1 << iota
	nameInstance
	nameTemplate
	nameAny = namePlain | nameInstance | nameTemplate
)

// isUnitType reports whether t is a suffix systemd accepts for unit names.
func isUnitType(t string) bool {
	switch t {
	case "service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope":
		return true
	}
	return false
}

// unitType returns the suffix of a unit name after its last dot.
func unitType(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return ""
}

func unitTypeMayTemplate(t string) bool {
	switch t {
	case "service", "socket", "target", "timer", "path":
		return true
	}
	return false
}

func unitTypeMayAlias(t string) bool {
	switch t {
	case "service", "socket", "target", "device", "timer", "path":
		return true
	}
	return false
}

// unitNameKind classifies a unit name as systemd's unit_name_is_valid does,
// returning 0 for an invalid name.
func unitNameKind(n string) int {
	if n == "" || len(n) >= 256 {
		return 0
	}
	e := strings.LastIndexByte(n, '.')
	if e <= 0 || !isUnitType(n[e+1:]) {
		return 0
	}
	at := -1
	for i := 0; i < e; i++ {
		c := n[i]
		if c == '@' {
			if at < 0 {
				at = i
			}
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":-_.\\", c) >= 0) {
			return 0
		}
	}
	switch {
	case at == 0:
		return 0
	case at < 0:
		return namePlain
	case e > at+1:
		return nameInstance
	default:
		return nameTemplate
	}
}

// unitNameIs reports whether n is a valid unit name of one of the kinds.
func unitNameIs(n string, kinds int) bool { return unitNameKind(n)&kinds != 0 }

// unitTemplate returns the template of an instance or template name:
// "getty@tty1.service" → "getty@.service".
func unitTemplate(n string) (string, bool) {
	if !unitNameIs(n, nameInstance|nameTemplate) {
		return "", false
	}
	at := strings.IndexByte(n, '@')
	dot := strings.LastIndexByte(n, '.')
	return n[:at+1] + n[dot:], true
}

// unitInstance returns the instance of an instance name.
func unitInstance(n string) string {
	if !unitNameIs(n, nameInstance) {
		return ""
	}
	return n[strings.IndexByte(n, '@')+1 : strings.LastIndexByte(n, '.')]
}

// unitReplaceInstance returns the template or instance n with instance i.
func unitReplaceInstance(n, i string) (string, bool) {
	t, ok := unitTemplate(n)
	if !ok {
		return "", false
	}
	at := strings.IndexByte(t, '@')
	return t[:at+1] + i + t[at+1:], true
}

// validateAlias is systemd's unit_validate_alias_symlink_or_warn: an alias
// must keep the unit type and the kind of name (an instance may point to its
// template).
func validateAlias(src, dst string) error {
	sk := unitNameKind(src)
	if sk == 0 || !unitTypeMayAlias(unitType(src)) || sk != namePlain && !unitTypeMayTemplate(unitType(src)) {
		return fmt.Errorf("%s: %w", src, errUnitInvalid)
	}
	if src == dst {
		return fmt.Errorf("%s is an alias of itself: %w", src, errUnitLoop)
	}
	dk := unitNameKind(dst)
	switch {
	case dk == 0,
		dk != sk && !(sk == nameInstance && dk == nameTemplate),
		dk == nameInstance && unitInstance(src) != unitInstance(dst),
		unitType(src) != unitType(dst):
		return fmt.Errorf("%s → %s: %w", src, dst, errUnitXDev)
	}
	return nil
}

// hasPathPrefix reports whether p is prefix or lies below it, comparing
// whole path components.
func hasPathPrefix(p, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}
