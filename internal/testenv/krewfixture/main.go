// Command krewfixture is the kubectl plugin that testenv.KrewIndex publishes:
// a static binary that prints "NAME VERSION" and its arguments, and a short
// cobra-style help (one flag, --greeting) for --help.
//
// It is built once per test binary; its name and version come from stamp,
// which the build sets (-X main.stamp=...) to a marker followed by padding
// and which KrewIndex.Publish overwrites in place for each plugin version, so
// the bytes (and sha256) of two versions differ without a second build.
package main

import (
	"fmt"
	"os"
	"strings"
)

// stamp is a 16-byte marker then "NAME VERSION" padded with spaces; the
// marker is given only on the build's command line, so it is in the binary
// once.
var stamp = "unstamped-fixture"

const markerLen = 16

func main() {
	name, version := "fixture", "v0.0.0"
	if len(stamp) > markerLen {
		if f := strings.Fields(stamp[markerLen:]); len(f) == 2 {
			name, version = f[0], f[1]
		}
	}
	greeting := ""
	var rest []string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			fmt.Printf(`Prints its name, version and arguments (krew test fixture %[1]s).

Usage:
  kubectl-%[1]s [flags] [args...]

Flags:
      --greeting string   a greeting to print first
  -h, --help              help for kubectl-%[1]s
`, name)
			return
		case a == "--greeting":
			if i+1 >= len(args) {
				fmt.Fprintln(os.Stderr, "Error: flag needs an argument: --greeting")
				os.Exit(1)
			}
			i++
			greeting = args[i]
		case strings.HasPrefix(a, "--greeting="):
			greeting = strings.TrimPrefix(a, "--greeting=")
		default:
			rest = append(rest, a)
		}
	}
	if greeting != "" {
		fmt.Println(greeting)
	}
	fmt.Println(name, version)
	for _, a := range rest {
		fmt.Println(a)
	}
}
