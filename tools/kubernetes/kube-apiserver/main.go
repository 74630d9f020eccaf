// Command kube-apiserver builds the real Kubernetes API server from the Go
// module proxy for the test environment; it lives in its own module so the
// product's go.mod never depends on k8s.io/kubernetes.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
