package runscexec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Install writes the link and its settings, replaces what an earlier
// server wrote, and refuses a runsc path the link could not exec as is.
func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runsc")
	for _, cfg := range []Config{
		{Runsc: "/usr/bin/runsc", Flags: []string{"--platform=ptrace"}},
		{Runsc: "/opt/runsc", Flags: []string{"--network=host", "--oci-seccomp"}},
	} {
		link, err := Install(dir, "/bin/true", cfg)
		if err != nil {
			t.Fatal(err)
		}
		if link != filepath.Join(dir, Name) {
			t.Errorf("link at %s", link)
		}
		if target, err := os.Readlink(link); err != nil || target != "/bin/true" {
			t.Errorf("link points at %q (%v)", target, err)
		}
		var got Config
		data, _ := os.ReadFile(filepath.Join(dir, configName))
		if err := json.Unmarshal(data, &got); err != nil || got.Runsc != cfg.Runsc || !slices.Equal(got.Flags, cfg.Flags) {
			t.Errorf("settings %s (%v), want %+v", data, err, cfg)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%d files in %s, want the link and its settings", len(entries), dir)
	}
	if _, err := Install(dir, "/bin/true", Config{Runsc: "runsc"}); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Errorf("a relative runsc path: %v", err)
	}
}

// Without its settings the stand-in fails, saying what it missed.
func TestExecWithoutSettings(t *testing.T) {
	missing := filepath.Join(t.TempDir(), configName)
	if err := execRunsc(missing, []string{"state", "x"}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("execRunsc: %v", err)
	}
}
