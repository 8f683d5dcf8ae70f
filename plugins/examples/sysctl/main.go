// Command sysctl is an example collector plugin for the qinfra agent: it
// reports kernel parameters that hardening baselines check (CIS, the
// kernel's own self-protection guide) as items of kind "ext", key
// "sysctl:sysctl:<parameter>", with the value in the attribute "value".
//
// Configure it in the agent's configuration:
//
//	plugins:
//	  - path: /usr/lib/qinfra/plugins/sysctl
//	    timeout: 10s
//
// Parameters are read from <root>/proc/sys. Those under net.* belong to a
// network namespace: the plugin sees its own, which is the host's when the
// agent runs on the host or with hostNetwork.
package main

import "github.com/quantumlayer/qinfra/plugins/collector"

func main() {
	collector.Serve(sysctlCollector{})
}
