package escape

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// A fileAttack changes or names plugin files to make the server run
// something it did not check. Each gets a harness of its own.
type fileAttack struct {
	name, expect string
	extraTOML    string
	// attack does it and returns what went wrong, and what was seen.
	attack func(t *testing.T, h *harness) (problems []string, observed string)
}

// variant writes a different plugin of the tier's kind at path, one that
// does not know the hostile plugin's "env": a script for the container
// tiers, the wasm sandbox's own test guest for wasm.
func variant(t *testing.T, h *harness, path string) {
	t.Helper()
	if h.tier.native {
		os.WriteFile(path, []byte("#!/bin/sh\necho SWAPPED-RAN\n"), 0o755)
		return
	}
	copyFile(t, testenv.WasmGuest(t, "sandbox/wasm/testdata/hostile", "other"), path)
}

// refusedWithout checks a call was refused before anything ran.
func refusedWithout(res *runtime.Result, err error, why string) ([]string, string) {
	if err == nil {
		return []string{fmt.Sprintf("the call ran: status %s, output %q", res.Status, clip(res.Output, 200))}, "it ran"
	}
	if !errors.Is(err, runtime.ErrRefused) || !strings.Contains(err.Error(), why) {
		return []string{"refused, but not saying " + why + ": " + err.Error()}, err.Error()
	}
	return nil, err.Error()
}

var fileAttacks = []fileAttack{
	{name: "a symlink swapped after discovery", expect: "the new target never runs: the call runs the file discovery checked, or is refused",
		attack: func(t *testing.T, h *harness) ([]string, string) {
			link, other := filepath.Join(h.dir, "kubectl-swap"+ext(h)), filepath.Join(t.TempDir(), "other"+ext(h))
			os.Symlink(h.pluginFile, link)
			h.rt.Discover(context.Background())
			variant(t, h, other)
			os.Remove(link)
			os.Symlink(other, link)
			res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "swap", Args: []string{"env"}})
			switch {
			case err != nil:
				return refusedWithout(res, err, "changed on disk since it was discovered")
			case strings.Contains(res.Output, "BLOCKED: environment: printed"):
				return nil, "the checked file ran, from the path discovery resolved; the new target did not"
			default:
				return []string{fmt.Sprintf("something else ran: status %s, output %q", res.Status, clip(res.Output, 200))}, "the new target ran"
			}
		}},
	{name: "a plugin file rewritten in place, size and mtime kept", expect: "the call is refused",
		attack: func(t *testing.T, h *harness) ([]string, string) {
			path := filepath.Join(h.dir, "kubectl-mimic"+ext(h))
			copyFile(t, h.pluginFile, path)
			h.rt.Discover(context.Background())
			rewriteInPlace(t, path)
			res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "mimic", Args: []string{"env"}})
			return refusedWithout(res, err, "changed on disk since it was discovered")
		}},
	{name: "a plugin that does not match its sha256 pin", expect: "the call is refused, naming the pin",
		extraTOML: "[plugins.pins]\npinned = \"sha256:" + strings.Repeat("0", 64) + "\"\n",
		attack: func(t *testing.T, h *harness) ([]string, string) {
			copyFile(t, h.pluginFile, filepath.Join(h.dir, "kubectl-pinned"+ext(h)))
			h.rt.Discover(context.Background())
			res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "pinned", Args: []string{"env"}})
			return refusedWithout(res, err, "pinned to sha256:0000")
		}},
	{name: "a plugin folder writable by others", expect: "discovery warns that anyone may replace its plugins",
		attack: func(t *testing.T, h *harness) ([]string, string) {
			os.Chmod(h.dir, 0o777)
			defer os.Chmod(h.dir, 0o700)
			h.rt.Discover(context.Background())
			for _, w := range h.rt.Warnings() {
				if w.Path == h.dir && strings.Contains(w.Message, "writable by every user") {
					return nil, w.Message
				}
			}
			return []string{fmt.Sprintf("no warning: %+v", h.rt.Warnings())}, "no warning"
		}},
	nameAttack("a plugin name with a slash", "x/../hostile"),
	nameAttack("a plugin name with ..", "../hostile"),
	nameAttack("a plugin name with NUL", "host\x00ile"),
	nameAttack("a plugin name that is a path", h0("/usr/bin/id")),
	nameAttack("a plugin name with spaces", "hos tile"),
	nameAttack("a plugin name outside ASCII", "höstile"),
}

func h0(s string) string { return s }

// nameAttack calls the plugin by a name that is not one, hoping it
// resolves to a file somewhere: it must be refused before anything runs.
func nameAttack(title, name string) fileAttack {
	return fileAttack{name: title, expect: "the call is refused; nothing runs",
		attack: func(t *testing.T, h *harness) ([]string, string) {
			res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: name, Args: []string{"env"}})
			if err == nil {
				return []string{fmt.Sprintf("%q ran: status %s, output %q", name, res.Status, clip(res.Output, 200))}, "it ran"
			}
			return nil, err.Error()
		}}
}

func ext(h *harness) string {
	if h.tier.native {
		return ""
	}
	return ".wasm"
}

// rewriteInPlace changes the file's last byte and sets its mtime back, as
// an attacker hiding a change would.
func rewriteInPlace(t *testing.T, path string) {
	t.Helper()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a ctime tick apart
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := make([]byte, 1)
	f.ReadAt(last, before.Size()-1)
	f.WriteAt([]byte{last[0] ^ 1}, before.Size()-1)
	f.Close()
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// Every plugin-file attack on every tier.
func TestPluginFileAttacksAreRefused(t *testing.T) {
	tg := hostTargets(t)
	for _, tr := range tiers {
		t.Run(tr.name, func(t *testing.T) {
			for _, a := range fileAttacks {
				t.Run(a.name, func(t *testing.T) {
					h := newHarness(t, tr, tg, a.extraTOML)
					problems, observed := a.attack(t, h)
					if len(problems) > 0 {
						t.Errorf("%s on %s did not hold: %s", a.name, tr.name, strings.Join(problems, "; "))
						observed = strings.Join(problems, "; ")
					}
					record(reportRow{Category: "plugin files", Case: a.name, Tier: tr.name, Expected: a.expect, Observed: h.named(observed), Held: len(problems) == 0})
				})
			}
		})
	}
}
