package launch

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestReadTakesTheHeaderAndNotOneByteMore: what follows the header is the
// plugin's, byte for byte; argv with spaces, quotes and newlines survives.
func TestReadTakesTheHeaderAndNotOneByteMore(t *testing.T) {
	h := Header{Argv: []string{"/plugin/kubectl-x", "a b", "$(touch /tmp/pwned)", "line\nbreak", ""}, Env: []string{"K=V"},
		Kubeconfig: []byte("apiVersion: v1\n"), SHA256: strings.Repeat("ab", 32), Size: 3}
	var buf bytes.Buffer
	if err := Write(&buf, h); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("BINand stdin")
	// One byte a read, as a pipe may deliver it.
	r := io.Reader(&oneByte{&buf})
	got, err := Read(r)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Errorf("got %+v, want %+v", got, h)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "BINand stdin" {
		t.Errorf("after the header: %q", rest)
	}
	for name, in := range map[string][]byte{
		"empty":     nil,
		"too large": {0xff, 0xff, 0xff, 0xff},
		"short":     {0, 0, 0, 9, '{'},
		"no argv":   append([]byte{0, 0, 0, 2}, "{}"...),
	} {
		if _, err := Read(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}
