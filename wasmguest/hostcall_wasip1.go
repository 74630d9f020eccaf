//go:build wasip1

package wasmguest

import (
	"encoding/binary"
	"unsafe"

	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

//go:wasmimport kubernetes_mcp_server_http_v1 round_trip
func hostRoundTrip(reqPtr unsafe.Pointer, reqLen uint32, respPtr unsafe.Pointer, respCap uint32, respLenPtr unsafe.Pointer) uint32

// firstBuffer fits most answers (a get, a short list) in one exchange.
const firstBuffer = 64 << 10

func roundTrip(req []byte) ([]byte, error) {
	resp := make([]byte, firstBuffer)
	var n [4]byte
	st := abi.Status(hostRoundTrip(unsafe.Pointer(unsafe.SliceData(req)), uint32(len(req)),
		unsafe.Pointer(unsafe.SliceData(resp)), uint32(len(resp)), unsafe.Pointer(&n[0])))
	if st == abi.StatusShortBuffer {
		resp = make([]byte, binary.LittleEndian.Uint32(n[:]))
		st = abi.Status(hostRoundTrip(nil, 0, unsafe.Pointer(unsafe.SliceData(resp)), uint32(len(resp)), unsafe.Pointer(&n[0])))
	}
	if st != abi.StatusOK {
		return nil, statusError(st)
	}
	return resp[:binary.LittleEndian.Uint32(n[:])], nil
}

func inSandbox() bool { return true }

func hostConfig() (*rest.Config, error) { return nil, ErrNotInSandbox }

// statusError is a round_trip status other than OK.
type statusError abi.Status

func (e statusError) Error() string { return abi.Status(e).String() }
