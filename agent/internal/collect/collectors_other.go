//go:build !linux

package collect

// registry lists no collectors outside Linux yet: the Linux collectors read
// files that other systems do not have.
//
// TODO: Windows collectors (installed programs from the registry, local
// accounts, services from the service control manager, os facts).
func registry() []registration { return nil }
