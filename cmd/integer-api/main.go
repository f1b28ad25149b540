// Command integer-api: see services/integerapi.
package main

import (
	"os"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/services/integerapi"
)

func main() { os.Exit(cliflags.Run(integerapi.App(), os.Args)) }
