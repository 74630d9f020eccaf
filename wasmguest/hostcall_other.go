//go:build !wasip1

package wasmguest

import (
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func roundTrip([]byte) ([]byte, error) { return nil, ErrNotInSandbox }

func inSandbox() bool { return false }

// hostConfig is the kubeconfig as kubectl loads it: $KUBECONFIG, else
// ~/.kube/config, else the in-cluster configuration. Only host builds link
// clientcmd; a guest does not pay for it.
func hostConfig() (*rest.Config, error) {
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
}
