// Command small is the smallest useful Go guest: it echoes its arguments.
// The benchmarks use it for the cost of one call of a small module.
package main

import (
	"os"
	"strings"
)

func main() { os.Stdout.WriteString(strings.Join(os.Args[1:], " ") + "\n") }
