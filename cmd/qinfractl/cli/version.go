package cli

import (
	"fmt"

	"github.com/quantumlayer/qinfra/pkg/version"
)

// runVersion runs `version`: the CLI's version, and the server's when a
// token is at hand to ask it. A server that cannot be reached is reported
// but is not a failure: the command's job is the local version.
func runVersion(c *cli, args []string) error {
	pos, err := parse(c.flagSet("version", ""), args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("version takes no arguments, got %q", pos[0])
	}
	fmt.Fprintf(c.stdout, "qinfractl %s\n", version.Version)
	if c.g.token == "" {
		return nil
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var info serverInfoResp
	if err := cl.call(c.ctx, "GET", "/api/v1/server-info", nil, nil, &info); err != nil {
		fmt.Fprintf(c.stderr, "qinfractl: server version unavailable: %v\n", err)
		return nil
	}
	fmt.Fprintf(c.stdout, "qinfra-server %s\n", clean(info.Version))
	return nil
}
