// Package wasmguest lets a kubectl plugin compiled to WebAssembly
// (GOOS=wasip1 GOARCH=wasm) reach its cluster from the wasm sandbox of
// kubernetes-mcp-server, with client-go unchanged.
//
// WASI has no sockets. The sandbox instead offers a host function (see
// package sandbox/wasm/abi) that carries one HTTP request to the call's API
// gateway, which adds the cluster's credentials, decides the request against
// policy and audits it. Transport is an http.RoundTripper over that function;
// RESTConfig and Wrap give client-go a rest.Config that uses it:
//
//	cfg, err := wasmguest.RESTConfig()
//	if err != nil { ... }
//	clientset, err := kubernetes.NewForConfig(cfg)
//
// Plugins that load a kubeconfig themselves (genericclioptions, clientcmd)
// can keep doing so: the sandbox gives them a KUBECONFIG with no secret in
// it, and Wrap turns the rest.Config they build into one over Transport.
//
// Requests are answered whole: a watch returns when it ends, and upgrades
// (exec, attach, port-forward) are refused by the gateway.
package wasmguest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

// ErrNotInSandbox is Transport's error outside the wasm sandbox, where the
// host function does not exist.
var ErrNotInSandbox = errors.New("wasmguest: not running in the wasm sandbox of kubernetes-mcp-server")

// Transport is an http.RoundTripper over the sandbox's host function. Its
// zero value is ready to use; it is safe for concurrent use.
type Transport struct{}

// RoundTrip sends req to the call's gateway and returns its response.
func (Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var wire bytes.Buffer
	// Write sends the path and query, the headers and the body (chunked
	// when its length is unknown), and closes the body.
	if err := req.Write(&wire); err != nil {
		return nil, fmt.Errorf("wasmguest: encode %s %s: %w", req.Method, req.URL.Path, err)
	}
	if wire.Len() > abi.MaxRequestBytes {
		return nil, fmt.Errorf("wasmguest: %s %s: %s", req.Method, req.URL.Path, abi.StatusRequestTooLarge)
	}
	raw, err := roundTrip(wire.Bytes())
	if err != nil {
		return nil, fmt.Errorf("wasmguest: %s %s: %w", req.Method, req.URL.Path, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
	if err != nil {
		return nil, fmt.Errorf("wasmguest: read the response to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return resp, nil
}

// RESTConfig returns a client-go configuration whose every request goes
// through Transport to the call's cluster. Outside the sandbox (the same
// plugin built for the host) it is the kubeconfig as kubectl loads it, so
// one source serves both builds.
func RESTConfig() (*rest.Config, error) {
	if !inSandbox() {
		return hostConfig()
	}
	return Wrap(&rest.Config{Host: abi.GatewayURL}), nil
}

// Wrap returns a copy of cfg that sends its requests through Transport.
// TLS settings and credentials are dropped: the host function needs none,
// and the gateway would drop them anyway. Use it with genericclioptions'
// ConfigFlags.WithWrapConfigFn, for example.
func Wrap(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.TLSClientConfig = rest.TLSClientConfig{}
	out.BearerToken, out.BearerTokenFile, out.Username, out.Password = "", "", "", ""
	out.AuthProvider, out.ExecProvider = nil, nil
	out.Dial, out.Proxy, out.WrapTransport = nil, nil, nil
	out.Transport = Transport{}
	return out
}
