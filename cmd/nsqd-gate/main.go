// Command nsqd-gate: see services/nsqdgate.
package main

import (
	"os"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/services/nsqdgate"
)

func main() { os.Exit(cliflags.Run(nsqdgate.App(), os.Args)) }
