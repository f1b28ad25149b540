// Command consul-file-sd: see internal/promsd.
package main

import (
	"os"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/promsd"
)

func main() { os.Exit(cliflags.Run(promsd.App(), os.Args)) }
