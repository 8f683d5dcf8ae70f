// Package cli is qinfractl, the operator CLI, as a library: Run is the
// whole program given its arguments, outputs and environment. It is a
// package rather than part of package main so that tests under server/,
// the only place Go lets import the real API handler and store, can run the
// CLI in-process against them.
//
// Each noun lives in its own file (hosts.go, host.go, host_inventory.go,
// token.go, audit.go, version.go); this file holds dispatch and the flags
// they share.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"
)

// defaultServer is where `qinfra-server` listens for the API out of the box.
const defaultServer = "https://127.0.0.1:8443"

// globals are the flags every command accepts.
type globals struct {
	server string
	token  string
	caFile string
	output string
}

// cli is one invocation: its flags, its outputs and its clock.
type cli struct {
	g      globals
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	ctx    context.Context
}

// noun is a top-level command; its run dispatches on the verb, if any.
type noun struct {
	name    string
	summary string
	run     func(c *cli, args []string) error
}

// nouns lists the commands in the order usage shows them.
var nouns = []noun{
	{"hosts", "list hosts (hosts list)", runHosts},
	{"host", "show, inspect, revoke or label one host (host get|inventory|changes|revoke|label)", runHost},
	{"token", "create or list enrollment tokens (token create|list)", runToken},
	{"audit", "read the audit log", runAudit},
	{"baseline", "apply, capture, list, show or delete golden baselines (baseline apply|capture|list|get|delete)", runBaseline},
	{"drift", "fleet drift summary, a host's drift, detect, accept (drift [summary]|host|detect|accept)", runDrift},
	{"vulns", "list vulnerabilities, a host's findings; mute them (vulns [--host ID]|mute|unmute|mutes)", runVulns},
	{"vulndb", "import OSV advisories or show the database (vulndb import PATH|status)", runVulnDB},
	{"version", "print the version", runVersion},
}

// usageError is a mistake in the command line; it is reported with a hint
// at -h rather than as a server failure.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Run is qinfractl's main without the process: args excludes the program
// name and env looks up environment variables (os.Getenv in production).
// It returns the exit code: 0 on success, 1 on a usage or API error, whose
// message goes to stderr.
func Run(args []string, stdout, stderr io.Writer, env func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := &cli{
		g: globals{
			server: orDefault(env("QINFRA_SERVER"), defaultServer),
			token:  env("QINFRA_TOKEN"),
			caFile: env("QINFRA_CA_FILE"),
			output: "table",
		},
		stdout: stdout,
		stderr: stderr,
		now:    time.Now,
		ctx:    ctx,
	}
	fs := flag.NewFlagSet("qinfractl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.globalFlags(fs)
	fs.Usage = func() { c.usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() == 0 {
		c.usage(fs)
		return 1
	}
	name := fs.Arg(0)
	i := slices.IndexFunc(nouns, func(n noun) bool { return n.name == name })
	if name == "help" {
		c.usage(fs)
		return 0
	}
	if i < 0 {
		fmt.Fprintf(stderr, "qinfractl: unknown command %q\n", name)
		c.usage(fs)
		return 1
	}
	err := nouns[i].run(c, fs.Args()[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errReported) {
		return 1
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "qinfractl: %s\nRun 'qinfractl %s -h' for usage.\n", ue.msg, name)
		return 1
	}
	fmt.Fprintf(stderr, "qinfractl: %v\n", err)
	return 1
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// globalFlags registers the shared flags on fs. Every subcommand's flag set
// registers them too, so `qinfractl hosts list -o json` works as well as
// `qinfractl -o json hosts list`; the defaults are the current values, so
// registering again never resets what an earlier position set.
func (c *cli) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.g.server, "server", c.g.server, "API `URL` (env QINFRA_SERVER)")
	fs.Var(secretFlag{&c.g.token}, "token", "API token `secret` (env QINFRA_TOKEN)")
	fs.StringVar(&c.g.caFile, "ca-file", c.g.caFile, "PEM file of the CA that signed the server's certificate (env QINFRA_CA_FILE)")
	fs.StringVar(&c.g.output, "o", c.g.output, "output format: table or json")
}

func (c *cli) usage(fs *flag.FlagSet) {
	w := c.stderr
	fmt.Fprintf(w, "Usage: qinfractl [flags] <command> [args]\n\nCommands:\n")
	for _, n := range nouns {
		fmt.Fprintf(w, "  %-8s %s\n", n.name, n.summary)
	}
	fmt.Fprintf(w, "\nFlags (also accepted after the command):\n")
	fs.PrintDefaults()
}

// flagSet returns a flag set for a subcommand, with the global flags.
func (c *cli) flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("qinfractl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.globalFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: qinfractl %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and positional arguments in any order, as users type
// `host inventory h-1 --kind package`; the flag package alone stops at the
// first positional argument. After "--" everything is positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			// The flag package has printed the problem and the usage.
			return nil, errReported
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if err := validateOutput(fs.Lookup("o").Value.String()); err != nil {
		return nil, err
	}
	return pos, nil
}

func validateOutput(o string) error {
	if o != "table" && o != "json" {
		return usagef("-o must be table or json, not %q", o)
	}
	return nil
}

// secretFlag is a string flag whose value is never shown, so -h output
// cannot leak a token taken from QINFRA_TOKEN or an earlier --token.
type secretFlag struct{ p *string }

func (f secretFlag) String() string { return "" }
func (f secretFlag) Set(v string) error {
	*f.p = v
	return nil
}

// errReported is an error already printed (by the flag package); run only
// turns it into the exit code.
var errReported = errors.New("error already reported")

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// verb finds the verb in args for nouns that have several.
func (c *cli) verb(noun string, args []string, verbs ...string) (string, []string, error) {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintf(c.stderr, "Usage: qinfractl %s <%s> [flags] [args]\nRun 'qinfractl %s <%s> -h' for the flags of each.\n",
			noun, strings.Join(verbs, "|"), noun, strings.Join(verbs, "|"))
		return "", nil, flag.ErrHelp
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, usagef("%s needs one of: %s", noun, strings.Join(verbs, ", "))
	}
	if !slices.Contains(verbs, args[0]) {
		return "", nil, usagef("unknown command %q; %s has: %s", noun+" "+args[0], noun, strings.Join(verbs, ", "))
	}
	return args[0], args[1:], nil
}
