package collect

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

const (
	passwdPath = "/etc/passwd"
	shadowPath = "/etc/shadow"
)

// Password states of commonv1.User.
const (
	passwordSet     = "set"
	passwordEmpty   = "empty"
	passwordLocked  = "locked"
	passwordNone    = "none"
	passwordUnknown = "unknown"
)

// usersCollector reports the local accounts of /etc/passwd, with the state,
// never the hash, of their password.
type usersCollector struct{}

func (usersCollector) Name() string { return "users" }

func (usersCollector) Collect(ctx context.Context, h HostFS) ([]*commonv1.Item, error) {
	users, found, err := readHostFile(h, passwdPath, parsePasswd)
	if err != nil || !found {
		return nil, err
	}
	// Without /etc/shadow no account has a shadow entry; a shadow file that
	// exists but cannot be read leaves every state unknown.
	shadow, _, err := readHostFile(h, shadowPath, parseShadow)
	shadowReadable := err == nil
	items := make([]*commonv1.Item, 0, len(users))
	for _, u := range users {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		u.PasswordState = passwordState(u.GetPasswordState(), shadow, shadowReadable, u.GetName())
		it, err := sealed(inventory.KindUser, u.GetName(), u)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// passwordState decides a user's state from the password field of passwd
// (carried in PasswordState by parsePasswd) and the shadow states by name.
// Only "x" in passwd defers to shadow; anything else is the password itself.
func passwordState(passwdField string, shadow map[string]string, shadowReadable bool, name string) string {
	if passwdField != "x" {
		return hashState(passwdField)
	}
	if !shadowReadable {
		return passwordUnknown
	}
	if s, ok := shadow[name]; ok {
		return s
	}
	return passwordNone
}

// hashState classifies a password hash field without keeping it.
func hashState(hash string) string {
	switch {
	case hash == "":
		return passwordEmpty
	case hash[0] == '!' || hash[0] == '*':
		return passwordLocked
	default:
		return passwordSet
	}
}

// parsePasswd parses passwd(5) lines as glibc's files backend does: comment
// and malformed lines and NIS compat entries ("+", "-") are skipped, and for
// a name listed twice the first entry wins. The password field is returned
// in PasswordState for passwordState to interpret; it is never kept.
func parsePasswd(r io.Reader) ([]*commonv1.User, error) {
	var users []*commonv1.User
	seen := map[string]bool{}
	err := eachLine(r, func(line string) {
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] == "" || seen[f[0]] {
			return
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return
		}
		seen[f[0]] = true
		users = append(users, &commonv1.User{
			Name:          f[0],
			Uid:           uint32(uid),
			Gid:           uint32(gid),
			Gecos:         f[4],
			Home:          f[5],
			Shell:         f[6],
			PasswordState: f[1],
		})
	})
	return users, err
}

// parseShadow parses shadow(5) into each user's password state. The hash is
// classified as it is read and dropped.
func parseShadow(r io.Reader) (map[string]string, error) {
	states := map[string]string{}
	err := eachLine(r, func(line string) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return
		}
		if _, dup := states[name]; dup {
			return
		}
		hash, _, _ := strings.Cut(rest, ":")
		states[name] = hashState(hash)
	})
	return states, err
}

// eachLine calls fn for each line of an /etc database that is not empty, a
// comment or a NIS compat entry.
func eachLine(r io.Reader, fn func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		fn(line)
	}
	return sc.Err()
}
