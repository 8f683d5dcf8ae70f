// Package version carries the build's version, set by the Makefile through
// -ldflags.
package version

// Version is the release version, or "dev" for an untagged build.
var Version = "dev"
