package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
)

// FuzzLoad loads arbitrary bytes as the configuration file, with an empty
// environment and no flags. Load must not panic; it returns either an error
// and no configuration, or a configuration whose every value passes the
// checks of its setting (defaults included); and the same bytes load the
// same way twice.
func FuzzLoad(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "config", "*.toml"))
	if err != nil || len(examples) == 0 {
		f.Fatalf("no example configurations: %v", err)
	}
	for _, name := range examples {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"[plugins]\nmax_concurrent = 0\n",
		"[plugins]\nallowed_plugins = [\"kubectl-\", \"[\", \"\"]\n",
		"[plugins]\ndestructive_patterns = []\n",
		"[plugins]\nrefresh_interval = \"-1s\"\nexecution_timeout = \"0s\"\n",
		"[plugins]\nplugin_paths = [\"~/bin\", \"${NO_SUCH_DIR}/bin\"]\n",
		"[plugins.pins]\nevict = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n\"\" = \"x\"\n",
		"[plugins.cluster_plugins]\n\"\" = [\"x\"]\nc1 = [\"kubectl-*\"]\n",
		"[[plugins.rules]]\nname = \"a\"\nplugins = [\"*\"]\nverbs = [\"get\"]\nresources = [\"pods\"]\nnamespaces = [\"\"]\n" +
			"[[plugins.rules]]\nname = \"a\"\nplugins = [\"*\"]\nverbs = [\"*\"]\nresources = [\"secrets\", \"*/scale\"]\n",
		"[[plugins.rules]]\nplugins = []\nverbs = [\"escalate\"]\nresources = [\"\"]\n",
		"[plugins]\nrules = []\n",
		"[nsk]\nkubeconfig_dir = \"/x\"\n[clusters]\nkubeconfig_dir = \"/y\"\n",
		"[nsk]\nrancher_token = \"t\"\nauto_refresh = true\n",
		"[server]\nport = 65536\n[log]\nlevel = \"loud\"\n",
		"[sandbox]\nwasm_memory_mib = 4097\nuser = 0\nbackend = \"none\"\n",
		"plugins = 1\n",
		"[plugins]\nmax_output = 9223372036854775807\n",
		"[plugins]\nenabled = \"true\"\n[plugins]\n",
		"[plugins.\"rules\"]\nx = 1\n",
	} {
		f.Add([]byte(s))
	}
	// One file per fuzzing process, rewritten for each input: a fresh
	// temporary folder per input would cost more than loading it.
	path := filepath.Join(f.TempDir(), "config.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		opts := Options{File: path, LookupEnv: lookup(nil)}
		cfg, err := Load(opts)
		again, errAgain := Load(opts)
		if fmt.Sprint(err) != fmt.Sprint(errAgain) || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("loading twice differs:\n%v, %+v\n%v, %+v", err, cfg, errAgain, again)
		}
		if err != nil {
			if cfg != nil {
				t.Fatalf("Load returned a configuration and the error %v", err)
			}
			if err.Error() == "" {
				t.Fatal("Load failed without saying why")
			}
			return
		}
		if cfg == nil {
			t.Fatal("Load returned neither a configuration nor an error")
		}
		if cfg.File != path {
			t.Errorf("File = %q, want %q", cfg.File, path)
		}
		values := cfg.Values()
		for _, s := range settings {
			v, ok := values[s.key]
			if !ok {
				t.Errorf("%s has no value", s.key)
				continue
			}
			if v.Source != SourceDefault && v.Source != SourceFile {
				t.Errorf("%s comes from %s %q, with no environment and no flags", s.key, v.Source, v.Origin)
			}
			if s.ptr == nil {
				continue
			}
			typed := reflect.ValueOf(s.ptr(cfg)).Elem().Interface()
			if k, ok := typed.(keptEmpty); ok {
				typed = []string(k)
			}
			if s.check != nil {
				if err := s.check(typed); err != nil {
					t.Errorf("%s = %#v (from %s %s) fails its check: %v", s.key, typed, v.Source, v.Origin, err)
				}
			}
			if rules, ok := typed.([]Rule); ok {
				checkRules(t, rules)
			}
		}
	})
}

// checkRules checks loaded rules as loading does: every field valid, the
// required ones not empty, names unique.
func checkRules(t *testing.T, rules []Rule) {
	t.Helper()
	names := map[string]bool{}
	for i, r := range rules {
		if r.Name != "" {
			if err := rulesyntax.CheckName(r.Name); err != nil {
				t.Errorf("rules[%d].name %q: %v", i, r.Name, err)
			}
			if names[r.Name] {
				t.Errorf("rules[%d].name %q is not unique", i, r.Name)
			}
			names[r.Name] = true
		}
		for field, items := range map[string][]string{
			"plugins": r.Plugins, "clusters": r.Clusters, "verbs": r.Verbs,
			"resources": r.Resources, "namespaces": r.Namespaces,
		} {
			if len(items) == 0 {
				t.Errorf("rules[%d].%s is empty", i, field)
			}
			if err := checkRuleField(field, items); err != nil {
				t.Errorf("rules[%d].%s = %q: %v", i, field, items, err)
			}
		}
	}
}
