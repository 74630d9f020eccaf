package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// installedResult is plugins_install's structuredContent.
type installedResult struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	Index           string `json:"index"`
	Outcome         string `json:"outcome"`
	PreviousVersion string `json:"previous_version"`
	SHA256          string `json:"sha256"`
	ArchiveSHA256   string `json:"archive_sha256"`
	Tool            string `json:"tool"`
	ShadowedBy      string `json:"shadowed_by"`
}

// newInstallE2E is the end-to-end set-up with installs on, from a local
// index "test", into a krew root of its own, with an audit file.
func newInstallE2E(t *testing.T, backend string) (*e2eEnv, *testenv.KrewIndex, string) {
	t.Helper()
	idx := testenv.NewKrewIndex(t)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	extra := fmt.Sprintf(`allow_install = true
krew_binary = %q
krew_root = %q
krew_indexes = { test = %q }
pins = { newpinned = "sha256:%s" }
[audit]
file = %q
`, filepath.Join(testenv.RealPlugins(t), "kubectl-krew"), filepath.Join(t.TempDir(), "krew"), idx.Dir, strings.Repeat("0", 64), audit)
	return newE2E(t, backend, extra), idx, audit
}

func TestE2EInstallFromAnIndex(t *testing.T) {
	e, idx, audit := newInstallE2E(t, "container")
	idx.Publish(t, "newhello", "v1.0.0")
	idx.Publish(t, "other", "v1.0.0")
	s := connectStdio(t, e)
	ctx := context.Background()

	before := tools(t, s)
	if before["plugins_install"] == nil {
		t.Fatal("no plugins_install with allow_install = true")
	}
	if before["plugin_newhello"] != nil {
		t.Fatal("plugin_newhello before its install")
	}

	// A plugin policy does not allow is refused before anything is downloaded.
	res, _ := call(t, s, ctx, "plugins_install", map[string]any{"plugin": "other"})
	if !res.IsError || !strings.Contains(text(res), "not allowed") {
		t.Errorf("install of a plugin policy does not allow: %s", text(res))
	}
	if idx.Requests() != 0 {
		t.Errorf("a refused install downloaded %d archives", idx.Requests())
	}

	s.mu.Lock()
	changes := s.listChanged
	s.mu.Unlock()
	res, _ = call(t, s, ctx, "plugins_install", map[string]any{"plugin": "newhello"})
	if res.IsError {
		t.Fatalf("install: %s", text(res))
	}
	got := installed(t, res)
	if got.Outcome != "installed" || got.Version != "v1.0.0" || got.Index != "test" || got.Tool != "plugin_newhello" ||
		len(got.SHA256) != 64 || len(got.ArchiveSHA256) != 64 {
		t.Errorf("install result: %+v", got)
	}
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.listChanged > changes
	}, "notifications/tools/list_changed after the install")
	if tools(t, s)["plugin_newhello"] == nil {
		t.Fatal("no plugin_newhello after its install")
	}
	res, r := call(t, s, ctx, "plugin_newhello", map[string]any{"args": []any{"a b"}})
	if res.IsError || r.Status != "ok" || r.Sandbox != "container" || !strings.Contains(r.Output, "newhello v1.0.0") || !strings.Contains(r.Output, "a b") {
		t.Errorf("installed plugin: %s", text(res))
	}

	// update installs the newest version in place.
	idx.Publish(t, "newhello", "v1.1.0")
	res, _ = call(t, s, ctx, "plugins_install", map[string]any{"plugin": "newhello"})
	if got := installed(t, res); res.IsError || got.Outcome != "already_installed" || got.Version != "v1.0.0" {
		t.Errorf("install again without update: %s", text(res))
	}
	res, _ = call(t, s, ctx, "plugins_install", map[string]any{"plugin": "test/newhello", "update": true})
	if got := installed(t, res); res.IsError || got.Outcome != "updated" || got.Version != "v1.1.0" || got.PreviousVersion != "v1.0.0" {
		t.Errorf("update: %s", text(res))
	}
	if res, r := call(t, s, ctx, "plugin_newhello", nil); res.IsError || !strings.Contains(r.Output, "newhello v1.1.0") {
		t.Errorf("updated plugin: %s", text(res))
	}

	// Installed is not allowed: a plugin whose file does not match its pin
	// is installed, but policy does not let it run.
	idx.Publish(t, "newpinned", "v1.0.0")
	res, _ = call(t, s, ctx, "plugins_install", map[string]any{"plugin": "newpinned"})
	if got := installed(t, res); res.IsError || got.Outcome != "installed" || got.Tool != "" || !strings.Contains(text(res), "It may not run") {
		t.Errorf("install of a plugin its pin refuses: %s", text(res))
	}
	if res, r := call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "newpinned"}); !res.IsError || r.Status != "refused" {
		t.Errorf("a plugin its pin refuses ran: %s", text(res))
	}

	// A plugin of the same name on PATH comes first, as with kubectl, and
	// the result says so.
	idx.Publish(t, "echo", "v1.0.0")
	res, _ = call(t, s, ctx, "plugins_install", map[string]any{"plugin": "echo"})
	if got := installed(t, res); res.IsError || got.Outcome != "installed" || got.ShadowedBy != filepath.Join(e.dir, "kubectl-echo") || got.Tool != "" {
		t.Errorf("install of a plugin PATH shadows: %s", text(res))
	}
	if res, r := call(t, s, ctx, "plugin_echo", map[string]any{"args": []any{"still"}}); res.IsError || strings.TrimSpace(r.Output) != "still" {
		t.Errorf("plugin_echo after an install of another echo: %s", text(res))
	}

	// Every install is audited, refused ones too.
	data, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec struct{ Type, Plugin, Outcome string }
		json.Unmarshal([]byte(line), &rec)
		if rec.Type == "install" {
			outcomes = append(outcomes, rec.Plugin+":"+rec.Outcome)
		}
	}
	if want := "other:failed newhello:installed newhello:already_installed newhello:updated newpinned:installed echo:installed"; strings.Join(outcomes, " ") != want {
		t.Errorf("audited installs %q, want %q", outcomes, want)
	}
}

func installed(t *testing.T, res *mcp.CallToolResult) installedResult {
	t.Helper()
	var r installedResult
	data, _ := json.Marshal(res.StructuredContent)
	json.Unmarshal(data, &r)
	return r
}

func TestInstallOfflineAndATamperedArchive(t *testing.T) {
	e, idx, _ := newInstallE2E(t, "container")
	good := idx.Publish(t, "newoffline", "v3.0.0")
	bad := idx.Publish(t, "newtampered", "v1.0.0")

	stdout, stderr, code := run(t, e.env, "--config", e.config, "plugins", "install", "--manifest", good.Manifest, "--archive", good.Archive, "-o", "json")
	if code != 0 {
		t.Fatalf("offline install: exit %d\n%s", code, stderr)
	}
	var got installedResult
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Outcome != "installed" || got.Version != "v3.0.0" || got.SHA256 != good.BinarySHA256 {
		t.Errorf("offline install: %v %s", err, stdout)
	}
	if idx.Requests() != 0 {
		t.Errorf("the offline install downloaded %d archives", idx.Requests())
	}
	list := func() string {
		out, stderr, code := run(t, e.env, "--config", e.config, "plugins", "list")
		if code != 0 {
			t.Fatalf("plugins list: exit %d\n%s", code, stderr)
		}
		return out
	}
	before := list()
	if !strings.Contains(before, "kubectl-newoffline") {
		t.Errorf("plugins list does not show the installed plugin:\n%s", before)
	}

	_, stderr, code = run(t, e.env, "--config", e.config, "plugins", "install", "--manifest", bad.Manifest, "--archive", idx.TamperedArchive(t, bad))
	if code == 0 || !strings.Contains(strings.ToLower(stderr), "sha256") || !strings.Contains(stderr, "nothing changed") {
		t.Errorf("tampered archive: exit %d\n%s", code, stderr)
	}
	if after := list(); after != before {
		t.Errorf("a refused install changed the plugins:\nbefore %s\nafter  %s", before, after)
	}
}

func TestInstallIsOffUnlessAllowed(t *testing.T) {
	e := newE2E(t, "none", "")
	_, stderr, code := run(t, e.env, "--config", e.config, "plugins", "install", "hello")
	if code == 0 || !strings.Contains(stderr, "allow_install = true") {
		t.Errorf("install with installs off: exit %d\n%s", code, stderr)
	}
}
