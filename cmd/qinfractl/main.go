// Command qinfractl is the operator CLI of qinfra: it lists hosts and their
// inventory, revokes and labels hosts, creates enrollment tokens and reads
// the audit log, all over the server's REST API.
//
// Usage:
//
//	qinfractl [global flags] <noun> [<verb>] [flags] [args]
//
// Global flags, accepted before or after the noun: --server URL
// (QINFRA_SERVER, default https://127.0.0.1:8443), --token SECRET
// (QINFRA_TOKEN), --ca-file PATH (QINFRA_CA_FILE), -o table|json.
//
// The program lives in package cli; see there for why.
package main

import (
	"os"

	"github.com/quantumlayer/qinfra/cmd/qinfractl/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
