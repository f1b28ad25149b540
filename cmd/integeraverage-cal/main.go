// Command integeraverage-cal: see services/averager.
package main

import (
	"os"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/services/averager"
)

func main() { os.Exit(cliflags.Run(averager.App(), os.Args)) }
