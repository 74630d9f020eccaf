// Command kubectl builds the real kubectl from the Go module proxy for the
// plugin sandbox's root filesystem (see hack/build-image.sh); it lives in its
// own module so the product's go.mod never depends on k8s.io/kubectl.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
