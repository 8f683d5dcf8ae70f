//go:build !linux && !windows

package collect

// registry lists no collectors on systems other than Linux and Windows: the
// collectors read files and interfaces those systems have.
func registry() []registration { return nil }

// serviceCollectorName is the collector reporting items of kind service.
const serviceCollectorName = "systemd"
