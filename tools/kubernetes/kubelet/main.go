// Command kubelet builds the real kubelet from the Go module proxy for the
// test environment's single-node cluster (the Pod-per-call backend's
// tests); see ../../../shared/notes/kubernetes-node.md for what it needs.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
