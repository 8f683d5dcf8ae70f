package collect

import (
	"errors"
	"fmt"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

func TestOwner(t *testing.T) {
	cases := map[inventory.Ref]string{
		{Kind: "package", Key: "dpkg:openssl:amd64"}: "dpkg",
		{Kind: "package", Key: "rpm:bash:x86_64"}:    "rpm",
		{Kind: "user", Key: "root"}:                  "users",
		{Kind: "group", Key: "root"}:                 "groups",
		{Kind: "service", Key: "ssh.service"}:        "systemd",
		{Kind: "file", Key: "/etc/passwd"}:           "files",
		{Kind: "os", Key: "host"}:                    "os",
		{Kind: "package", Key: "apk:musl:x86_64"}:    "apk",
		{Kind: "port", Key: "tcp/0.0.0.0:22"}:        "ports",
		{Kind: "process", Key: "/usr/sbin/sshd"}:     "processes",
		{Kind: "package", Key: "nocolon"}:            "",
	}
	for r, want := range cases {
		if got := Owner(r); got != want {
			t.Errorf("Owner(%v) = %q, want %q", r, got, want)
		}
	}
}

func TestFailedCollectors(t *testing.T) {
	err := errors.Join(&CollectorError{Collector: "rpm", Err: errors.New("x")},
		fmt.Errorf("wrapped: %w", &CollectorError{Collector: "files", Err: errors.New("y")}))
	got := FailedCollectors(err)
	if len(got) != 2 || !got["rpm"] || !got["files"] {
		t.Fatalf("got %v", got)
	}
	if len(FailedCollectors(nil)) != 0 {
		t.Fatal("nil error has no failures")
	}
}
