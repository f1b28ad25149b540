// Package version holds the build's version, set by the Makefile with
// -ldflags "-X github.com/loopstock/loopstock/internal/version.Version=…".
package version

// Version is the release version, or "dev" for an unversioned build.
var Version = "dev"
