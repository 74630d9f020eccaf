package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const manifests = `# a comment before the first document
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx:latest
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: ops}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          initContainers: [{name: init, image: busybox}]
          containers:
          - name: job
            image: registry.local:5000/tools/job@sha256:0123
            securityContext: {privileged: true}
            resources: {limits: {cpu: 1, memory: 1Gi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
---
`

func lintText(t *testing.T, input string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(input), &out, &errb)
	return out.String(), errb.String(), code
}

func TestFindings(t *testing.T) {
	out, stderr, code := lintText(t, manifests, "-o", "json")
	if code != exitFindings || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, fmt.Sprintf("%s %s %s %s %s @%d", f.Severity, f.Check, f.Kind, f.Name, f.Container, f.Line))
	}
	want := []string{
		"error image-tag Deployment web web @1",
		"warning limits Deployment web web @1",
		"warning probes Deployment web web @1",
		"error image-tag CronJob nightly init @13",
		"warning limits CronJob nightly init @13",
		"error privileged CronJob nightly job @13",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rep.Objects != 2 || rep.Errors != 3 || rep.Warnings != 3 {
		t.Errorf("objects %d, errors %d, warnings %d", rep.Objects, rep.Errors, rep.Warnings)
	}
}

func TestText(t *testing.T) {
	out, _, code := lintText(t, manifests)
	if code != exitFindings {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{
		`error: -:1: Deployment/web container "web": image "nginx:latest" uses the "latest" tag; pin a version or a digest [image-tag]`,
		`warning: -:1: Deployment/web container "web": no resources.limits for cpu and memory [limits]`,
		`warning: -:1: Deployment/web container "web": no readinessProbe and no livenessProbe [probes]`,
		`CronJob/nightly (namespace ops) container "init": image "busybox" has no tag`,
		"2 workload(s) checked: 3 error(s), 3 warning(s)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

func TestFlags(t *testing.T) {
	clean := `{"kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
  "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}},
    "readinessProbe": {"httpGet": {"port": 80}}}]}}]}`
	tests := []struct {
		name  string
		input string
		args  []string
		code  int
		want  string
	}{
		{"a warning passes by default", clean, nil, exitClean, "no livenessProbe [probes]"},
		{"--fail-on warning", clean, []string{"--fail-on", "warning"}, exitFindings, "1 warning(s)"},
		{"--skip", clean, []string{"--fail-on=warning", "--skip", "probes"}, exitClean, "0 warning(s)"},
		{"--fail-on none", manifests, []string{"--fail-on", "none"}, exitClean, "3 error(s)"},
		{"--skip every error", manifests, []string{"--skip", "image-tag,privileged"}, exitClean, "0 error(s), 3 warning(s)"},
		{"unknown check", clean, []string{"--skip", "nope"}, exitUsage, `no such check`},
		{"bad output", clean, []string{"-o", "yaml"}, exitUsage, "--output"},
		{"not YAML", "kind: [", nil, exitUsage, "-:1: not YAML or JSON"},
		{"no kind", "a: b\n", nil, exitUsage, "no kind"},
		{"empty input", "", nil, exitClean, "0 workload(s) checked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := lintText(t, tt.input, tt.args...)
			if code != tt.code || !strings.Contains(out+stderr, tt.want) {
				t.Errorf("exit %d (want %d), want %q in:\n%s%s", code, tt.code, tt.want, out, stderr)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(file, []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code := lintText(t, "", file)
	if code != exitFindings || !strings.Contains(out, file+":13: CronJob/nightly") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if _, stderr, code := lintText(t, "", filepath.Join(t.TempDir(), "missing.yaml")); code != exitUsage || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("a missing file: exit %d, %s", code, stderr)
	}
}

func TestImageTag(t *testing.T) {
	for image, pinned := range map[string]bool{
		"nginx": false, "nginx:latest": false, "registry:5000/nginx": false, "registry:5000/a/nginx:latest": false,
		"nginx:1.27": true, "registry:5000/nginx:1": true, "nginx@sha256:00": true, "nginx:latest@sha256:00": true,
	} {
		if _, got := imageTag(image); got != pinned {
			t.Errorf("imageTag(%q) pinned = %v, want %v", image, got, pinned)
		}
	}
}

func TestHelpNamesTheFlags(t *testing.T) {
	out, _, code := lintText(t, "", "--help")
	for _, want := range []string{"kubectl manifest-lint [flags]", "--fail-on string", "--skip strings", "-o, --output string"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--help (exit %d) has no %q:\n%s", code, want, out)
		}
	}
}
