// Command wasmsleeper is a WebAssembly plugin for the shutdown tests: it
// asks its gateway for a namespace named after its argument, so that the
// server's log shows it runs, sleeps that many seconds and prints "end".
package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/wasmguest"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] == "--help" {
		fmt.Println("usage: kubectl newsleep SECONDS")
		return
	}
	d, err := time.ParseDuration(os.Args[1] + "s")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	marker := "sleep-" + strings.ReplaceAll(os.Args[1], ".", "-")
	req, _ := http.NewRequest(http.MethodGet, "https://gateway/api/v1/namespaces/"+marker, nil)
	if resp, err := (wasmguest.Transport{}).RoundTrip(req); err == nil {
		resp.Body.Close()
	}
	fmt.Println("start", marker)
	time.Sleep(d)
	fmt.Println("end", marker)
}
