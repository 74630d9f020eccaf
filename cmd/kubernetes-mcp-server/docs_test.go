package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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

// Every test SECURITY.md names as the proof of a promise exists, so a
// renamed or deleted test cannot leave a promise unbacked.
func TestSecurityNamesOnlyTestsThatExist(t *testing.T) {
	doc, err := os.ReadFile("../../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		data, err := os.ReadFile(path)
		for _, m := range testFunc.FindAllStringSubmatch(string(data), -1) {
			defined[m[1]] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	named := testName.FindAllString(string(doc), -1)
	if len(named) < 20 {
		t.Fatalf("SECURITY.md names only %d tests", len(named))
	}
	for _, name := range named {
		if !defined[name] {
			t.Errorf("SECURITY.md names %s, which no test file defines", name)
		}
	}
}

var (
	testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)\w+)\(`)
	testName = regexp.MustCompile(`\b(?:Test|Fuzz)[A-Z]\w+`)
)
