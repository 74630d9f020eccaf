package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
)

// The README's configuration reference names every key the server accepts,
// so it stays true as settings are added.
func TestReadmeNamesEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, key := range config.Keys() {
		name := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(readme, "`"+name+"`") && !strings.Contains(readme, "`"+key+"`") &&
			!strings.Contains(readme, "["+key+"]") {
			t.Errorf("README.md does not document %s", key)
		}
	}
	root := newRootCommand(nil, nil)
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(readme, "--"+f.Name) {
			t.Errorf("README.md does not document --%s", f.Name)
		}
	})
}
