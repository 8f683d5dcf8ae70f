// Package plugins holds the hashicorp/go-plugin contracts of qinfra's
// out-of-process plugins and the example plugins built on them, in the
// manner of Nomad's plugins/: a shared handshake, each role's own few
// methods, and one Serve helper per role for plugin authors.
//
//   - collector: a plugin that reports inventory items of its own kinds
//     (contract proto/qinfra/plugin/v1/collector.proto). The agent runs it
//     like a built-in collector (agent/internal/collect.Collector), one
//     process per collection, killed when it overruns its timeout.
//   - examples/sysctl: a collector plugin reporting security-relevant
//     kernel parameters.
//
// Remediators will follow the same shape.
package plugins
