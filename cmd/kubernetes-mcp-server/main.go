// Command kubernetes-mcp-server is an MCP server that lets AI agents discover
// and run kubectl plugins, each call in its own throw-away sandbox.
package main

import (
	"os"
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}
