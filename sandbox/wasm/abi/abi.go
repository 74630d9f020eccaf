// Package abi is the versioned interface between the wasm sandbox and its
// guests: the host module a guest imports to reach its cluster, the one
// function in it, and what that function answers.
//
// A guest sends one HTTP/1.1 request, in wire form (as http.Request.Write
// writes it), and gets back one HTTP/1.1 response in wire form, with a
// Content-Length. The host serves the request through the call's own API
// gateway, in process: the gateway adds the cluster's credentials outside
// the guest, decides the request against policy and audits it. A guest
// never holds a credential, and has no other way out of the sandbox.
//
// Both the host (package sandbox/wasm) and the guest SDK (package
// wasmguest) import these names, so the two cannot drift apart.
package abi

// Module is the name of the host module guests import. A new, incompatible
// interface gets a new name; a host keeps serving the old ones.
const Module = "kubernetes_mcp_server_http_v1"

// RoundTrip is the module's one function:
//
//	round_trip(req_ptr, req_len, resp_ptr, resp_cap, resp_len_ptr u32) -> status u32
//
// With req_len > 0, the host reads the request from guest memory at
// [req_ptr, req_ptr+req_len), serves it, and writes the response's length as
// a little-endian u32 at resp_len_ptr. When the response fits in resp_cap
// bytes it is copied to resp_ptr and the status is StatusOK. When it does not,
// the status is StatusShortBuffer and the host keeps the response: a second
// call with req_len == 0 and a large enough buffer takes it. Any new request
// drops a response still kept.
const RoundTrip = "round_trip"

// Status is what round_trip returns.
type Status uint32

// The statuses of round_trip. An HTTP error (403 from policy, 404 from the
// cluster) is StatusOK with that response: statuses are about the exchange
// itself.
const (
	StatusOK Status = iota
	// StatusNoCluster: the call has no cluster, so there is nowhere to send it.
	StatusNoCluster
	// StatusBadMemory: a pointer or length lies outside the guest's memory.
	StatusBadMemory
	// StatusRequestTooLarge: the request is over MaxRequestBytes.
	StatusRequestTooLarge
	// StatusBadRequest: the bytes are not one HTTP/1.1 request.
	StatusBadRequest
	// StatusResponseTooLarge: the response is over MaxResponseBytes; it was dropped.
	StatusResponseTooLarge
	// StatusShortBuffer: the response is longer than resp_cap; it is kept.
	StatusShortBuffer
	// StatusNoResponse: req_len was 0 but no response is kept.
	StatusNoResponse
	// StatusFailed: the host could not serve the request (the call is ending).
	StatusFailed
)

// Limits of one exchange. The gateway's own limits (8 MiB of body, 1 MiB of
// headers) apply too, and are answered as HTTP errors that are audited.
const (
	MaxRequestBytes  = 10 << 20
	MaxResponseBytes = 64 << 20
)

// GatewayURL is the server URL a guest's client uses. No connection is ever
// made to it; the host function carries every request.
const GatewayURL = "https://gateway.kubernetes-mcp-server.invalid"

// String names a status, for errors.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNoCluster:
		return "this call has no cluster"
	case StatusBadMemory:
		return "pointer or length outside the guest's memory"
	case StatusRequestTooLarge:
		return "request over the limit of 10 MiB"
	case StatusBadRequest:
		return "not an HTTP/1.1 request"
	case StatusResponseTooLarge:
		return "response over the limit of 64 MiB"
	case StatusShortBuffer:
		return "response longer than the buffer"
	case StatusNoResponse:
		return "no response is kept"
	case StatusFailed:
		return "the host could not serve the request"
	}
	return "unknown status"
}
