package wasm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

// guestCluster is one call's side of round_trip: where its requests go and
// the response it keeps for a guest whose buffer was too short.
type guestCluster struct {
	handler http.Handler // the call's gateway; nil for a call without a cluster
	log     hclog.Logger

	mu      sync.Mutex
	pending []byte
}

type guestClusterKey struct{}

// withGuestCluster gives the host function of the guest instantiated with
// ctx its call's cluster.
func withGuestCluster(ctx context.Context, c *guestCluster) context.Context {
	return context.WithValue(ctx, guestClusterKey{}, c)
}

// instantiateHostModule offers abi.Module to every guest of r.
func instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	i32 := api.ValueTypeI32
	_, err := r.NewHostModuleBuilder(abi.Module).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(roundTrip), []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("req_ptr", "req_len", "resp_ptr", "resp_cap", "resp_len_ptr").
		WithResultNames("status").
		Export(abi.RoundTrip).
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("instantiate host module %s: %w", abi.Module, err)
	}
	return nil
}

// roundTrip is abi.RoundTrip. Whatever the guest passes, it answers with a
// status: a bad pointer or a bad request is the guest's error, never the
// server's.
func roundTrip(ctx context.Context, mod api.Module, stack []uint64) {
	reqPtr, reqLen := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	respPtr, respCap, respLenPtr := api.DecodeU32(stack[2]), api.DecodeU32(stack[3]), api.DecodeU32(stack[4])
	c, _ := ctx.Value(guestClusterKey{}).(*guestCluster)
	stack[0] = api.EncodeU32(uint32(c.roundTrip(ctx, mod.Memory(), reqPtr, reqLen, respPtr, respCap, respLenPtr)))
}

func (c *guestCluster) roundTrip(ctx context.Context, mem api.Memory, reqPtr, reqLen, respPtr, respCap, respLenPtr uint32) (st abi.Status) {
	if c == nil || c.handler == nil {
		return abi.StatusNoCluster
	}
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("round_trip panicked", "panic", p)
			st = abi.StatusFailed
		}
	}()
	// Check the output locations before any work is done for them.
	if _, ok := mem.Read(respPtr, respCap); !ok {
		return abi.StatusBadMemory
	}
	if _, ok := mem.Read(respLenPtr, 4); !ok {
		return abi.StatusBadMemory
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if reqLen == 0 {
		if c.pending == nil {
			return abi.StatusNoResponse
		}
	} else {
		c.pending = nil
		if reqLen > abi.MaxRequestBytes {
			return abi.StatusRequestTooLarge
		}
		view, ok := mem.Read(reqPtr, reqLen)
		if !ok {
			return abi.StatusBadMemory
		}
		// A copy: the gateway may read the body after this function returns
		// no more, but the request must not alias memory the guest owns.
		resp, st := c.serve(ctx, bytes.Clone(view))
		if st != abi.StatusOK {
			return st
		}
		c.pending = resp
	}
	resp := c.pending
	mem.WriteUint32Le(respLenPtr, uint32(len(resp)))
	if uint32(len(resp)) > respCap {
		return abi.StatusShortBuffer
	}
	mem.Write(respPtr, resp)
	c.pending = nil
	return abi.StatusOK
}

// serve parses one HTTP/1.1 request and has the gateway answer it.
func (c *guestCluster) serve(ctx context.Context, wire []byte) ([]byte, abi.Status) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
	if err != nil {
		c.log.Debug("round_trip: not a request", "error", err)
		return nil, abi.StatusBadRequest
	}
	if ctx.Err() != nil {
		return nil, abi.StatusFailed
	}
	req.RemoteAddr = "wasm-guest"
	w := &responseBuffer{header: http.Header{}}
	c.handler.ServeHTTP(w, req.WithContext(ctx))
	if w.tooLarge {
		return nil, abi.StatusResponseTooLarge
	}
	return w.wire(), abi.StatusOK
}

// responseBuffer collects the gateway's whole response for the guest. It is
// no http.Hijacker, so the gateway refuses upgrades (exec, attach,
// port-forward) from guests, and audits that.
type responseBuffer struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	tooLarge bool
}

func (w *responseBuffer) Header() http.Header { return w.header }

func (w *responseBuffer) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
}

func (w *responseBuffer) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(p) > abi.MaxResponseBytes {
		w.tooLarge = true
		return 0, fmt.Errorf("response over %d bytes", abi.MaxResponseBytes)
	}
	return w.body.Write(p)
}

// Flush is a no-op: the guest gets the response whole.
func (w *responseBuffer) Flush() {}

func (w *responseBuffer) wire() []byte {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	resp := &http.Response{
		StatusCode:    w.status,
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		ContentLength: int64(w.body.Len()),
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
	}
	var out bytes.Buffer
	out.Grow(w.body.Len() + 1024)
	_ = resp.Write(&out) // into a bytes.Buffer, which does not fail
	return out.Bytes()
}
