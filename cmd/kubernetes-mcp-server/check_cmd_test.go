package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `plugins check` gates a pipeline on how plugins behave: exit codes,
// output, and the API requests each made or must not make.
func TestPluginsCheck(t *testing.T) {
	e := newE2E(t, "container", "")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: nginx:latest\n"), 0o644)
	cases := filepath.Join(dir, "cases.toml")
	os.WriteFile(cases, []byte(`
[[case]]
name = "kubens lists namespaces and writes nothing"
plugin = "ns"
cluster = "beta"
output = "kube-system"
requests = ["list namespaces"]
no_requests = ["write *", "* secrets"]

[[case]]
name = "exit code and stderr"
plugin = "exit3"
exit_code = 3
error = "something broke"

[[case]]
name = "kube-score reads stdin"
plugin = "score"
args = ["score", "-"]
stdin_file = "pod.yaml"
exit_code = 1
output = "CRITICAL"

[[case]]
name = "a case that fails"
plugin = "echo"
args = ["hello"]
output = "^goodbye"
requests = ["get pods"]

[[case]]
name = "a refused call"
plugin = "nosuch"
exit_code = 125
`), 0o644)
	report := filepath.Join(dir, "junit.xml")
	stdout, stderr, code := run(t, e.env, "--config", e.config, "plugins", "check", cases, "--junit", report)
	if code != 1 {
		t.Errorf("exit %d, want 1 (one case fails)\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"PASS  kubens lists namespaces and writes nothing", "PASS  exit code and stderr", "PASS  kube-score reads stdin",
		"FAIL  a case that fails", `stdout does not match "^goodbye"`, `no API request matched "get pods"`,
		"PASS  a refused call", "5 cases: 4 passed, 1 failed",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var suite struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Cases    []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
		} `xml:"testcase"`
	}
	if err := xml.Unmarshal(data, &suite); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if suite.Tests != 5 || suite.Failures != 1 || len(suite.Cases) != 5 || suite.Cases[3].Failure == nil || suite.Cases[0].Failure != nil {
		t.Errorf("junit report:\n%s", data)
	}

	// A request that must not happen fails its case.
	os.WriteFile(cases, []byte("[[case]]\nplugin = \"ns\"\nno_requests = [\"list namespaces\"]\n"), 0o644)
	stdout, _, code = run(t, e.env, "--config", e.config, "plugins", "check", cases)
	if code != 1 || !strings.Contains(stdout, `matched "list namespaces", which must not happen`) {
		t.Errorf("no_requests: exit %d\n%s", code, stdout)
	}
}

func TestPluginsCheckRefusesABadFileWhole(t *testing.T) {
	e := newE2E(t, "none", "")
	for _, tc := range []struct{ file, want string }{
		{"[[case]]\nplugin = \"echo\"\nexitcode = 1\n", "exitcode"},
		{"[[case]]\nplugin = \"echo\"\nrequests = [\"list\"]\n", `write "VERB RESOURCE"`},
		{"[[case]]\nplugin = \"echo\"\nrequests = [\"LIST pods\"]\n", "lowercase"},
		{"[[case]]\nplugin = \"echo\"\noutput = \"(\"\n", "output"},
		{"[[case]]\nname = \"x\"\nplugin = \"echo\"\n[[case]]\nname = \"x\"\nplugin = \"echo\"\n", "used twice"},
		{"[[case]]\nargs = [\"a\"]\n", "no plugin"},
		{"", "no [[case]]"},
	} {
		cases := writeFile(t, tc.file)
		stdout, stderr, code := run(t, e.env, "--config", e.config, "plugins", "check", cases)
		if code != 1 || !strings.Contains(stderr, tc.want) || strings.Contains(stdout, "PASS") {
			t.Errorf("%q: exit %d, stderr %s, stdout %s; want %q", tc.file, code, stderr, stdout, tc.want)
		}
	}
}
