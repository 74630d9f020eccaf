package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"
)

// Severities of a finding.
const (
	severityError   = "error"
	severityWarning = "warning"
)

// The checks, by the name --skip takes.
const (
	checkLimits     = "limits"
	checkImageTag   = "image-tag"
	checkProbes     = "probes"
	checkPrivileged = "privileged"
)

var allChecks = []string{checkLimits, checkImageTag, checkProbes, checkPrivileged}

// finding is one problem in one container of one object.
type finding struct {
	Severity  string `json:"severity"`
	Check     string `json:"check"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Container string `json:"container"`
	Message   string `json:"message"`
	// Source is the input (a file name, or "-" for stdin) and Line the line
	// its YAML document starts on.
	Source string `json:"source"`
	Line   int    `json:"line"`
}

func (f finding) String() string {
	obj := f.Kind + "/" + f.Name
	if f.Namespace != "" {
		obj += " (namespace " + f.Namespace + ")"
	}
	return fmt.Sprintf("%s: %s:%d: %s container %q: %s [%s]", f.Severity, f.Source, f.Line, obj, f.Container, f.Message, f.Check)
}

// report is what one run found.
type report struct {
	Findings []finding `json:"findings"`
	Objects  int       `json:"objects"` // workloads checked
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
}

// The parts of a Kubernetes object the checks read. Everything else is
// ignored, so any apiVersion of a workload is understood.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec  json.RawMessage   `json:"spec"`
	Items []json.RawMessage `json:"items"` // kind: List
}

type podSpec struct {
	Containers     []container `json:"containers"`
	InitContainers []container `json:"initContainers"`
}

type container struct {
	Name      string `json:"name"`
	Image     string `json:"image"`
	Resources struct {
		Limits map[string]any `json:"limits"`
	} `json:"resources"`
	LivenessProbe   json.RawMessage `json:"livenessProbe"`
	ReadinessProbe  json.RawMessage `json:"readinessProbe"`
	SecurityContext *struct {
		Privileged *bool `json:"privileged"`
	} `json:"securityContext"`
}

// linter runs the enabled checks over manifests.
type linter struct {
	skip   map[string]bool
	report report
}

func newLinter(skip []string) (*linter, error) {
	l := &linter{skip: map[string]bool{}, report: report{Findings: []finding{}}}
	for _, s := range skip {
		known := false
		for _, c := range allChecks {
			known = known || c == s
		}
		if !known {
			return nil, fmt.Errorf("--skip %q: no such check (the checks are %s)", s, strings.Join(allChecks, ", "))
		}
		l.skip[s] = true
	}
	return l, nil
}

// lint reads a stream of YAML documents (or one JSON document) and checks
// every workload in it.
func (l *linter) lint(source string, r io.Reader) error {
	docs, err := splitDocuments(r)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	for _, d := range docs {
		data, err := yaml.YAMLToJSON(d.text)
		if err != nil {
			return fmt.Errorf("%s:%d: not YAML or JSON: %w", source, d.line, err)
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			continue // an empty document
		}
		if err := l.object(source, d.line, data); err != nil {
			return err
		}
	}
	return nil
}

func (l *linter) object(source string, line int, data []byte) error {
	var obj object
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("%s:%d: not a Kubernetes object: %w", source, line, err)
	}
	if strings.HasSuffix(obj.Kind, "List") {
		for _, item := range obj.Items {
			if err := l.object(source, line, item); err != nil {
				return err
			}
		}
		return nil
	}
	if obj.Kind == "" {
		return fmt.Errorf("%s:%d: not a Kubernetes object: no kind", source, line)
	}
	spec, ok, err := podSpecOf(obj)
	if err != nil {
		return fmt.Errorf("%s:%d: %s/%s: %w", source, line, obj.Kind, obj.Metadata.Name, err)
	}
	if !ok {
		return nil // not a workload: nothing to check
	}
	l.report.Objects++
	// Jobs run to completion: probes are for what keeps running.
	longRunning := obj.Kind != "Job" && obj.Kind != "CronJob"
	at := func(c container, severity, check, format string, args ...any) {
		if l.skip[check] {
			return
		}
		l.report.Findings = append(l.report.Findings, finding{
			Severity: severity, Check: check, Kind: obj.Kind, Name: obj.Metadata.Name,
			Namespace: obj.Metadata.Namespace, Container: c.Name, Message: fmt.Sprintf(format, args...),
			Source: source, Line: line,
		})
	}
	for i, c := range append(spec.InitContainers, spec.Containers...) {
		init := i < len(spec.InitContainers)
		if tag, pinned := imageTag(c.Image); !pinned {
			if tag == "" {
				at(c, severityError, checkImageTag, "image %q has no tag, so it means \"latest\"; pin a version or a digest", c.Image)
			} else {
				at(c, severityError, checkImageTag, "image %q uses the \"latest\" tag; pin a version or a digest", c.Image)
			}
		}
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			at(c, severityError, checkPrivileged, "runs privileged (securityContext.privileged: true): it can do anything on its node")
		}
		var missing []string
		for _, r := range []string{"cpu", "memory"} {
			if _, ok := c.Resources.Limits[r]; !ok {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			at(c, severityWarning, checkLimits, "no resources.limits for %s", strings.Join(missing, " and "))
		}
		if longRunning && !init {
			var probes []string
			if isNull(c.ReadinessProbe) {
				probes = append(probes, "readinessProbe")
			}
			if isNull(c.LivenessProbe) {
				probes = append(probes, "livenessProbe")
			}
			if len(probes) > 0 {
				at(c, severityWarning, checkProbes, "no %s", strings.Join(probes, " and no "))
			}
		}
	}
	return nil
}

// podSpecOf finds the pod template of the workload kinds Kubernetes has
// (and of custom ones that keep it at spec.template.spec).
func podSpecOf(obj object) (podSpec, bool, error) {
	var spec podSpec
	if isNull(obj.Spec) {
		return spec, false, nil
	}
	raw := obj.Spec
	path := []string{"template", "spec"}
	switch obj.Kind {
	case "Pod":
		path = nil
	case "CronJob":
		path = []string{"jobTemplate", "spec", "template", "spec"}
	}
	for _, key := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return spec, false, fmt.Errorf("spec: %w", err)
		}
		if raw = m[key]; isNull(raw) {
			return spec, false, nil
		}
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return spec, false, fmt.Errorf("pod spec: %w", err)
	}
	return spec, len(spec.Containers)+len(spec.InitContainers) > 0, nil
}

// imageTag returns an image reference's tag and whether it is pinned: by a
// digest, or by a tag other than "latest".
func imageTag(image string) (tag string, pinned bool) {
	if strings.Contains(image, "@") {
		return "", true
	}
	name := image[strings.LastIndex(image, "/")+1:]
	if i := strings.LastIndex(name, ":"); i >= 0 {
		tag = name[i+1:]
	}
	return tag, tag != "" && tag != "latest"
}

func isNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || bytes.Equal(s, []byte("null"))
}

type document struct {
	text []byte
	line int // where it starts, from 1
}

// splitDocuments splits a YAML stream at its "---" lines.
func splitDocuments(r io.Reader) ([]document, error) {
	var docs []document
	cur := document{line: 1}
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64<<10), 16<<20)
	n := 0
	for scanner.Scan() {
		n++
		line := scanner.Text()
		if line == "---" || strings.HasPrefix(line, "--- ") {
			docs = append(docs, cur)
			cur = document{line: n + 1}
			if rest := strings.TrimSpace(strings.TrimPrefix(line, "---")); rest != "" && !strings.HasPrefix(rest, "#") {
				cur.text = append(cur.text, rest+"\n"...)
				cur.line = n
			}
			continue
		}
		cur.text = append(cur.text, line+"\n"...)
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	return append(docs, cur), nil
}
