// Package plugins will hold the hashicorp/go-plugin contracts for
// out-of-process collectors and remediators: a shared handshake, a base
// plugin (info, config schema, set config) and each role's own few
// methods, served through one Serve helper. Built-in collectors implement
// the same Go interface in process (agent/internal/collect.Collector).
//
// Nothing is served from here yet; the contract lands with the first
// plugin, so that it is shaped by a real one.
package plugins
