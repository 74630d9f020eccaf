//go:build wasip1

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"time"
	"unsafe"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

var platformActions = map[string]action{
	"connect": func(addrs []string) {
		for _, a := range addrs {
			c, err := net.DialTimeout("tcp", a, 3*time.Second)
			if err == nil {
				c.Close()
			}
			attempt("connect to "+a, err)
		}
	},
}

// writeSelf writes to its own file by its host path: a guest has no other.
func writeSelf(hostPaths []string) { writeFiles(hostPaths) }

func findTokenInProcesses(string, int) int { return 0 }

func gatewayHost() string { return "gateway.kubernetes-mcp-server.invalid" }

// gatewayToken is "": the host function is the guest's only way out, and
// it needs no token.
func gatewayToken() string { return "" }

//go:wasmimport kubernetes_mcp_server_http_v1 round_trip
func hostRoundTrip(reqPtr unsafe.Pointer, reqLen uint32, respPtr unsafe.Pointer, respCap uint32, respLenPtr unsafe.Pointer) uint32

// roundTrip hands the raw request to the host function, as it is.
func roundTrip(raw []byte) (*http.Response, error) {
	buf := make([]byte, 1<<20)
	var n uint32
	if st := abi.Status(hostRoundTrip(unsafe.Pointer(&raw[0]), uint32(len(raw)), unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))); st != abi.StatusOK {
		return nil, fmt.Errorf("round_trip: %s", st)
	}
	return readResponse(bytes.NewReader(buf[:n]))
}
