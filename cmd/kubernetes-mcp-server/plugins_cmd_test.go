package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pluginsJSON is `plugins list --output json`.
type pluginsJSON struct {
	Plugins []struct {
		Name        string `json:"name"`
		Path        string `json:"path"`
		Kind        string `json:"kind"`
		SHA256      string `json:"sha256"`
		Allowed     bool   `json:"allowed"`
		Destructive bool   `json:"destructive"`
		Reason      string `json:"policy_reason"`
		Parameters  []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"parameters"`
		ExecutionCount int `json:"execution_count"`
	} `json:"plugins"`
	Warnings []struct {
		Plugin  string `json:"plugin"`
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"warnings"`
}

// pluginFolders builds folders with every case kubectl's plugin list knows:
// shadowed, not executable, underscore, nested and built-in-colliding plugins.
func pluginFolders(t *testing.T) (first, second string) {
	first, second = t.TempDir(), t.TempDir()
	write := func(dir, name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\necho hi\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(first, "kubectl-hello", 0o755)
	write(first, "kubectl-get_all", 0o755)
	write(first, "kubectl-foo-bar", 0o755)
	write(first, "kubectl-noexec", 0o644)
	write(first, "kubectl-get", 0o755)
	write(first, "kubectl-apply-fix", 0o755)
	write(first, "kubectl-drain_node", 0o755)
	write(second, "kubectl-hello", 0o755)
	write(second, "kubectl-noexec", 0o755)
	write(second, "kubectl-version", 0o755)
	write(second, "kubectl-get_all", 0o644)
	write(second, "not-a-plugin", 0o755)
	return first, second
}

func TestPluginsListAgreesWithKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed to compare with: %v", err)
	}
	first, second := pluginFolders(t)
	pathEnv := first + ":" + second

	cmd := exec.Command(kubectl, "plugin", "list")
	cmd.Env = []string{"PATH=" + pathEnv, "HOME=" + t.TempDir()}
	var kOut, kErr strings.Builder
	cmd.Stdout, cmd.Stderr = &kOut, &kErr
	cmd.Run() // exits 1 when it has warnings
	var kubectlPaths, kubectlWarnings []string
	for _, line := range strings.Split(kOut.String(), "\n") {
		if strings.HasPrefix(line, "/") {
			kubectlPaths = append(kubectlPaths, line)
		}
	}
	for _, line := range strings.Split(kErr.String(), "\n") {
		if strings.HasPrefix(line, "  - ") {
			kubectlWarnings = append(kubectlWarnings, strings.TrimPrefix(line, "  - "))
		}
	}
	if len(kubectlPaths) == 0 || len(kubectlWarnings) == 0 {
		t.Fatalf("kubectl plugin list printed nothing useful:\n%s\n%s", kOut.String(), kErr.String())
	}

	file := writeFile(t, "[plugins]\nplugin_paths = []\nallowed_plugins = [\"hello\"]\n")
	out, stderr, code := run(t, []string{"PATH=" + pathEnv, "KREW_ROOT=" + t.TempDir()},
		"plugins", "list", "--output", "json", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got pluginsJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// kubectl lists every file; ours lists the file that runs per name and
	// names the others in warnings.
	var ourPaths, ourWarnings []string
	for _, p := range got.Plugins {
		ourPaths = append(ourPaths, p.Path)
	}
	for _, w := range got.Warnings {
		if w.Plugin == "" {
			continue // folder warnings, which kubectl prints differently
		}
		if !slices.Contains(ourPaths, w.Path) && !slices.Contains(ourPaths[len(got.Plugins):], w.Path) {
			ourPaths = append(ourPaths, w.Path)
		}
		ourWarnings = append(ourWarnings, "warning: "+w.Message)
	}
	slices.Sort(kubectlPaths)
	slices.Sort(ourPaths)
	ourPaths = slices.Compact(ourPaths)
	if !slices.Equal(kubectlPaths, ourPaths) {
		t.Errorf("paths differ:\nkubectl %q\nours    %q", kubectlPaths, ourPaths)
	}
	slices.Sort(kubectlWarnings)
	slices.Sort(ourWarnings)
	if !slices.Equal(kubectlWarnings, ourWarnings) {
		t.Errorf("warnings differ:\nkubectl:\n  %s\nours:\n  %s", strings.Join(kubectlWarnings, "\n  "), strings.Join(ourWarnings, "\n  "))
	}

	byName := map[string]int{}
	for i, p := range got.Plugins {
		byName[p.Name] = i
	}
	hello := got.Plugins[byName["hello"]]
	if hello.Path != filepath.Join(first, "kubectl-hello") || !hello.Allowed || hello.Kind != "exec" || len(hello.SHA256) != 64 {
		t.Errorf("hello = %+v", hello)
	}
	if drain := got.Plugins[byName["drain_node"]]; !drain.Destructive || drain.Allowed || !strings.Contains(drain.Reason, "not allowed") {
		t.Errorf("drain_node = %+v", drain)
	}
	if noexec := got.Plugins[byName["noexec"]]; noexec.Path != filepath.Join(second, "kubectl-noexec") {
		t.Errorf("noexec runs from %s; kubectl would run the executable one", noexec.Path)
	}
}

func TestPluginsInfo(t *testing.T) {
	first, _ := pluginFolders(t)
	env := []string{"PATH=" + first, "KREW_ROOT=" + t.TempDir()}
	file := writeFile(t, "[plugins]\nplugin_paths = []\nblocked_plugins = [\"kubectl-get_*\"]\nallow_any_plugin = true\n")
	for _, spelling := range []string{"get_all", "get-all", "kubectl-get_all"} {
		out, stderr, code := run(t, env, "plugins", "info", spelling, "--output", "json", "--config", file)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", spelling, code, stderr)
		}
		var p struct {
			Name, Path, PolicyRule string
			Allowed                bool
		}
		json.Unmarshal([]byte(out), &p)
		var raw map[string]any
		json.Unmarshal([]byte(out), &raw)
		if raw["name"] != "get_all" || raw["allowed"] != false || raw["policy_rule"] != "blocked_plugins[0]" {
			t.Errorf("%s: %s", spelling, out)
		}
		for _, field := range []string{"name", "path", "description", "version", "aliases", "parameters", "last_used", "execution_count", "kind", "sha256", "destructive", "allowed", "policy_reason"} {
			if _, ok := raw[field]; !ok && field != "description" && field != "version" {
				t.Errorf("%s: no field %q in %s", spelling, field, out)
			}
		}
	}
	_, stderr, code := run(t, env, "plugins", "info", "nope", "--config", file)
	if code == 0 || !strings.Contains(stderr, `plugin "nope" not found`) {
		t.Errorf("info nope: exit %d, %s", code, stderr)
	}
	out, _, code := run(t, env, "plugins", "list", "--filter", "get*", "--config", file)
	if code != 0 || !strings.Contains(out, "kubectl-get_all") || strings.Contains(out, "kubectl-hello") {
		t.Errorf("list --filter get*: exit %d\n%s", code, out)
	}
}

// profile show prints what a call would run with, without running it.
func TestProfileShow(t *testing.T) {
	first, _ := pluginFolders(t)
	env := []string{"PATH=" + first, "KREW_ROOT=" + t.TempDir()}
	file := writeFile(t, "[plugins]\nplugin_paths = []\nallow_any_plugin = true\n[sandbox]\nmemory_mib = 96\n"+
		"[[plugins.rules]]\nname = \"hello-may-evict\"\nplugins = [\"hello\"]\nverbs = [\"create\"]\nresources = [\"pods/eviction\"]\n")
	out, stderr, code := run(t, env, "profile", "show", "hello", "--output", "json", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var p struct {
		Options      []string `json:"options"`
		RequestRules []struct {
			Name  string `json:"name"`
			Allow bool   `json:"allow"`
		} `json:"request_rules"`
		Spec struct {
			Root    struct{ Readonly bool }
			Process struct {
				User         struct{ UID int }
				Args         []string
				Capabilities struct{ Bounding []string }
			}
			Linux struct {
				Resources struct{ Memory struct{ Limit int64 } }
			}
		} `json:"spec"`
		Launch struct{ Argv []string } `json:"launch"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !p.Spec.Root.Readonly || p.Spec.Process.User.UID != 65534 || len(p.Spec.Process.Capabilities.Bounding) != 0 ||
		p.Spec.Linux.Resources.Memory.Limit != 96<<20 || p.Spec.Process.Args[0] != "/usr/local/libexec/kmcp-launch" ||
		len(p.Launch.Argv) == 0 || p.Launch.Argv[0] != "/plugin/kubectl-hello" {
		t.Errorf("spec: %+v, launch: %+v", p.Spec, p.Launch)
	}
	if len(p.RequestRules) == 0 || p.RequestRules[0].Name != "hello-may-evict" || !p.RequestRules[0].Allow {
		t.Errorf("request rules: %+v", p.RequestRules)
	}
	if len(p.Options) < 15 {
		t.Errorf("options: %q", p.Options)
	}
	if _, stderr, code := run(t, env, "profile", "show", "nope", "--config", file); code == 0 || !strings.Contains(stderr, `plugin "nope" not found`) {
		t.Errorf("profile show nope: %d %s", code, stderr)
	}
	// Under "none" the container profile is not what runs, and it says so.
	none := writeFile(t, "[plugins]\nplugin_paths = []\nallow_any_plugin = true\n[sandbox]\nbackend = \"none\"\n")
	out, stderr, code = run(t, env, "profile", "show", "hello", "--explain", "--config", none)
	if code != 0 || !strings.HasPrefix(out, `# NOTE: backend "none": plugins run as plain processes`) || !strings.Contains(stderr, "is NOT applied") {
		t.Errorf("profile show under none: exit %d\n%s\n%s", code, out, stderr)
	}
}

// An auditor gets every allowed plugin's profile in one document, and the
// plugins that get none with the reason.
func TestProfileShowAll(t *testing.T) {
	first, _ := pluginFolders(t)
	env := []string{"PATH=" + first, "KREW_ROOT=" + t.TempDir()}
	file := writeFile(t, "[plugins]\nplugin_paths = []\nallowed_plugins = [\"hello\", \"get_all\"]\n")
	out, stderr, code := run(t, env, "profile", "show", "--all", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Profiles []struct {
			Plugin       string            `json:"plugin"`
			Options      []string          `json:"options"`
			RequestRules []json.RawMessage `json:"request_rules"`
			Spec         *struct{}         `json:"spec"`
		} `json:"profiles"`
		NotAllowed []struct{ Plugin, Reason string } `json:"not_allowed"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var profiled, refused []string
	for _, p := range doc.Profiles {
		profiled = append(profiled, p.Plugin)
		if len(p.Options) == 0 || len(p.RequestRules) == 0 || p.Spec == nil {
			t.Errorf("profile of %s is incomplete", p.Plugin)
		}
	}
	for _, n := range doc.NotAllowed {
		refused = append(refused, n.Plugin)
		if !strings.Contains(n.Reason, "not allowed") {
			t.Errorf("%s: reason %q", n.Plugin, n.Reason)
		}
	}
	if strings.Join(profiled, ",") != "get_all,hello" || strings.Join(refused, ",") != "apply-fix,drain_node,foo-bar,get" {
		t.Errorf("profiled %q, not allowed %q", profiled, refused)
	}
	if _, stderr, code := run(t, env, "profile", "show", "--all", "hello", "--config", file); code == 0 || !strings.Contains(stderr, "unknown command") && !strings.Contains(stderr, "accepts 0 arg") {
		t.Errorf("--all with a name: exit %d %s", code, stderr)
	}
}
