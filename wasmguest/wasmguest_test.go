package wasmguest

import (
	"errors"
	"net/http"
	"testing"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Wrap keeps what a config says about the API (its host, rate limits,
// user agent) and drops every credential and transport setting.
func TestWrapDropsCredentialsAndTransports(t *testing.T) {
	in := &rest.Config{
		Host: "https://example", UserAgent: "ua", QPS: 7, Burst: 9,
		BearerToken: "t", BearerTokenFile: "/f", Username: "u", Password: "p",
		TLSClientConfig: rest.TLSClientConfig{CertData: []byte("c"), KeyData: []byte("k"), CAData: []byte("ca")},
		AuthProvider:    &clientcmdapi.AuthProviderConfig{Name: "x"},
		ExecProvider:    &clientcmdapi.ExecConfig{Command: "x"},
	}
	out := Wrap(in)
	if out.Host != in.Host || out.UserAgent != "ua" || out.QPS != 7 || out.Burst != 9 {
		t.Errorf("kept: %+v", out)
	}
	if out.BearerToken != "" || out.BearerTokenFile != "" || out.Username != "" || out.Password != "" ||
		out.CertData != nil || out.KeyData != nil || out.CAData != nil || out.AuthProvider != nil || out.ExecProvider != nil {
		t.Errorf("a credential survived: %+v", out)
	}
	if _, ok := out.Transport.(Transport); !ok {
		t.Errorf("transport %T", out.Transport)
	}
	if in.BearerToken != "t" {
		t.Error("Wrap changed its argument")
	}
	if _, err := rest.HTTPClientFor(out); err != nil {
		t.Errorf("client-go refuses the wrapped config: %v", err)
	}
}

// Outside the sandbox the transport says so instead of sending anything.
func TestTransportOutsideTheSandbox(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "https://example/api", nil)
	if _, err := (Transport{}).RoundTrip(req); !errors.Is(err, ErrNotInSandbox) {
		t.Errorf("err = %v", err)
	}
}
