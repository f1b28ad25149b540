// Command integer-gen: see services/integergen.
package main

import (
	"os"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/services/integergen"
)

func main() { os.Exit(cliflags.Run(integergen.App(), os.Args)) }
