package deploy_test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
)

// composeFile is what the tests read of docker-compose.yml.
type composeFile struct {
	Services map[string]composeService `json:"services"`
	Secrets  map[string]struct {
		File string `json:"file"`
	} `json:"secrets"`
	Volumes map[string]any `json:"volumes"`
}

type composeService struct {
	Image string `json:"image"`
	Build struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	User        string   `json:"user"`
	ReadOnly    bool     `json:"read_only"`
	Tmpfs       []string `json:"tmpfs"`
	CapDrop     []string `json:"cap_drop"`
	SecurityOpt []string `json:"security_opt"`
	Restart     string   `json:"restart"`
	Healthcheck struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval"`
		Timeout     string   `json:"timeout"`
		StartPeriod string   `json:"start_period"`
		Retries     int      `json:"retries"`
	} `json:"healthcheck"`
	Ports   []string `json:"ports"`
	Volumes []string `json:"volumes"`
	Secrets []struct {
		Source string `json:"source"`
		Target string `json:"target"`
	} `json:"secrets"`
}

const (
	configPath = "/etc/kubernetes-mcp-server/config.toml"
	tokenPath  = "/var/run/secrets/kubernetes-mcp-server/token"
)

// The folders the image expects writable under a read-only root.
var writableDirs = []string{"/var/cache/kubernetes-mcp-server", "/var/lib/kubernetes-mcp-server", "/var/log/kubernetes-mcp-server"}

func readCompose(t *testing.T, data []byte) composeFile {
	t.Helper()
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if got := slices.Sorted(maps.Keys(f.Services)); !slices.Equal(got, []string{"production", "staging"}) {
		t.Fatalf("services %v, want production and staging", got)
	}
	return f
}

// loadConfig loads a configuration file as the server does, with no
// environment of the test's.
func loadConfig(t *testing.T, file string) *config.Config {
	t.Helper()
	cfg, err := config.Load(config.Options{File: file, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("%s does not load: %v", file, err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("%s: warnings %v", file, cfg.Warnings)
	}
	return cfg
}

// imageHealthcheck is the HEALTHCHECK command of the Dockerfile.
func imageHealthcheck(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\nHEALTHCHECK .*?CMD (\[[^\n]*\])`).FindSubmatch(data)
	if m == nil {
		t.Fatal("no HEALTHCHECK ... CMD [...] in the Dockerfile")
	}
	var cmd []string
	if err := yaml.Unmarshal(m[1], &cmd); err != nil {
		t.Fatalf("the Dockerfile's HEALTHCHECK %s: %v", m[1], err)
	}
	return append([]string{"CMD"}, cmd...)
}

// The image's configuration and the two services' configurations load
// with the server's own loader, keep the image's contract (wasm sandbox,
// port 8080 beyond loopback with a token file, audit and cache in the
// writable folders, the image's plugin folder), and staging is the more
// permissive one.
func TestComposeAndImageConfigurationsLoad(t *testing.T) {
	img := loadConfig(t, filepath.Join("image", "config.toml"))
	prod := loadConfig(t, filepath.Join("compose", "production.toml"))
	staging := loadConfig(t, filepath.Join("compose", "staging.toml"))
	for name, c := range map[string]*config.Config{"image": img, "production": prod, "staging": staging} {
		for _, tt := range []struct {
			key       string
			got, want any
		}{
			{"sandbox.backend", c.Sandbox.Backend, "wasm"},
			{"sandbox.wasm_cache_dir", c.Sandbox.WasmCacheDir, "/var/cache/kubernetes-mcp-server/wasm"},
			{"server.port", c.Server.Port, 8080},
			{"server.bind_address", c.Server.BindAddress, "0.0.0.0"},
			{"server.auth_token_file", c.HTTP.AuthTokenFile, tokenPath},
			{"server.insecure_listen", c.HTTP.InsecureListen, false},
			{"audit.file", c.Audit.File, "/var/log/kubernetes-mcp-server/audit.jsonl"},
			{"plugins.plugin_paths", fmt.Sprint(c.Plugins.PluginPaths), "[/usr/local/lib/kubernetes-mcp-server/plugins]"},
			{"plugins.krew_root", c.Plugins.KrewRoot, "/var/lib/kubernetes-mcp-server/krew"},
			{"plugins.allow_install", c.Plugins.AllowInstall, false},
			{"plugins.allow_any_plugin", c.Plugins.AllowAnyPlugin, false},
		} {
			if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
				t.Errorf("%s: %s = %v, want %v", name, tt.key, tt.got, tt.want)
			}
		}
	}
	// The image's plugins, each a kubectl-NAME.wasm the Dockerfile builds.
	if got := fmt.Sprint(img.Plugins.AllowedPlugins); got != "[score manifest-lint pod-list]" {
		t.Errorf("image: allowed_plugins = %s", got)
	}
	dockerfile, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range img.Plugins.AllowedPlugins {
		if file := "kubectl-" + strings.ReplaceAll(name, "-", "_") + ".wasm"; !strings.Contains(string(dockerfile), file) {
			t.Errorf("the image allows %s, but the Dockerfile builds no %s", name, file)
		}
	}

	// Production: fewer plugins, read-only, no rediscovery, shorter calls.
	for _, p := range prod.Plugins.AllowedPlugins {
		if !slices.Contains(img.Plugins.AllowedPlugins, p) {
			t.Errorf("production allows %s, which the image does not have", p)
		}
	}
	if slices.Contains(prod.Plugins.AllowedPlugins, "pod-list") || !slices.Contains(staging.Plugins.AllowedPlugins, "pod-list") {
		t.Errorf("pod-list: production allows %v, staging %v; want it in staging only", prod.Plugins.AllowedPlugins, staging.Plugins.AllowedPlugins)
	}
	if !prod.Plugins.ReadOnly || staging.Plugins.ReadOnly {
		t.Errorf("read_only: production %v, staging %v", prod.Plugins.ReadOnly, staging.Plugins.ReadOnly)
	}
	if prod.Plugins.AutoDiscovery || !staging.Plugins.AutoDiscovery {
		t.Errorf("auto_discovery: production %v, staging %v", prod.Plugins.AutoDiscovery, staging.Plugins.AutoDiscovery)
	}
	if prod.Plugins.ExecutionTimeout >= staging.Plugins.ExecutionTimeout {
		t.Errorf("execution_timeout: production %s, staging %s", prod.Plugins.ExecutionTimeout, staging.Plugins.ExecutionTimeout)
	}
	if prod.Log.Level != "info" || staging.Log.Level != "debug" {
		t.Errorf("log.level: production %s, staging %s", prod.Log.Level, staging.Log.Level)
	}
}

// checkServices checks what both services must be: the image built from
// the Dockerfile, its own configuration mounted read-only, its token as a
// secret, hardened (read-only root, no capabilities, no new privileges,
// the image's user), the image's health check, a restart policy, volumes
// for the writable folders, and a port of its own. dir is where relative
// paths start (the raw file's) or "" (docker-compose config made them
// absolute).
func checkServices(t *testing.T, f composeFile, dir string) {
	t.Helper()
	abs := func(p string) string {
		if dir == "" || filepath.IsAbs(p) {
			return p
		}
		a, _ := filepath.Abs(filepath.Join(dir, p))
		return a
	}
	wantHealth := imageHealthcheck(t)
	ports := map[string]string{}
	for name, s := range f.Services {
		if s.Image != "kubernetes-mcp-server:latest" {
			t.Errorf("%s: image %q", name, s.Image)
		}
		if df := filepath.Join(abs(s.Build.Context), s.Build.Dockerfile); s.Build.Dockerfile != "Dockerfile" || !sameFile(df, filepath.Join("..", "Dockerfile")) {
			t.Errorf("%s: build %+v is not ../Dockerfile", name, s.Build)
		}
		if s.User != fmt.Sprintf("%d:%d", mcpUser, mcpUser) || !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) ||
			!slices.Contains(s.SecurityOpt, "no-new-privileges:true") || s.Restart == "" {
			t.Errorf("%s: user %q read_only %v cap_drop %v security_opt %v restart %q", name, s.User, s.ReadOnly, s.CapDrop, s.SecurityOpt, s.Restart)
		}
		if !slices.ContainsFunc(s.Tmpfs, func(m string) bool { return strings.HasPrefix(m, "/tmp:") || m == "/tmp" }) {
			t.Errorf("%s: no tmpfs at /tmp: %v", name, s.Tmpfs)
		}
		h := s.Healthcheck
		if !slices.Equal(h.Test, wantHealth) || h.Interval == "" || h.Timeout == "" || h.StartPeriod == "" || h.Retries < 1 {
			t.Errorf("%s: healthcheck %+v, want the image's %v", name, h, wantHealth)
		}

		var configMounts int
		writable := map[string]bool{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q has no target", name, v)
				continue
			}
			src, target, mode := parts[0], parts[1], ""
			if len(parts) > 2 {
				mode = parts[2]
			}
			switch {
			case target == configPath:
				configMounts++
				want := filepath.Join("compose", name+".toml")
				if !sameFile(abs(src), want) || mode != "ro" {
					t.Errorf("%s: configuration mount %q, want %s read-only", name, v, want)
				}
			case slices.Contains(writableDirs, target):
				if _, declared := f.Volumes[src]; strings.ContainsAny(src, "/.") || !declared {
					t.Errorf("%s: %s is not a named volume of the file: %q", name, target, v)
				}
				writable[target] = true
			default:
				if mode != "ro" {
					t.Errorf("%s: %q is writable and not one of the image's writable folders", name, v)
				}
			}
		}
		if configMounts != 1 || len(writable) != len(writableDirs) {
			t.Errorf("%s: %d configuration mounts, writable folders %v; want 1 and %v", name, configMounts, writable, writableDirs)
		}
		if len(s.Secrets) != 1 || s.Secrets[0].Target != tokenPath || f.Secrets[s.Secrets[0].Source].File == "" {
			t.Errorf("%s: secrets %+v, want one file secret at %s", name, s.Secrets, tokenPath)
		}
		if len(s.Ports) != 1 || !strings.HasSuffix(s.Ports[0], ":8080") && !strings.HasSuffix(s.Ports[0], ":8080/tcp") {
			t.Errorf("%s: ports %v, want one publishing 8080", name, s.Ports)
		} else {
			ports[name] = s.Ports[0]
		}
	}
	if ports["production"] == ports["staging"] {
		t.Errorf("production and staging publish the same port %s", ports["production"])
	}
}

func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// docker-compose.yml as written: both services and their settings, with
// loopback as the default address of both ports.
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	f := readCompose(t, data)
	checkServices(t, f, ".")
	for name, s := range f.Services {
		if len(s.Ports) == 1 && !strings.Contains(s.Ports[0], ":-127.0.0.1:") {
			t.Errorf("%s: port %q does not default to loopback", name, s.Ports[0])
		}
	}
}

// A real Compose implementation accepts the file: Debian's docker-compose
// (1.29, the Python one) checks it against the Compose schema offline and
// prints it resolved (anchors merged, variables and paths expanded), which
// must still hold everything above.
func TestComposeConfigWithDockerCompose(t *testing.T) {
	cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "config")
	cmd.Env = composeEnv(nil)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("docker-compose config: %v\n%s", err, stderr)
	}
	f := readCompose(t, out)
	checkServices(t, f, "")
	for name, want := range map[string]string{"production": "127.0.0.1:8080:8080/tcp", "staging": "127.0.0.1:8081:8080/tcp"} {
		if got := f.Services[name].Ports; len(got) != 1 || got[0] != want {
			t.Errorf("%s: resolved ports %v, want %s", name, got, want)
		}
	}
}

// composeEnv is the test's environment without the compose file's own
// variables, plus extra.
func composeEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KMCP_PRODUCTION_") && !strings.HasPrefix(kv, "KMCP_STAGING_") && !strings.HasPrefix(kv, "COMPOSE_") {
			env = append(env, kv)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// podman-compose (Debian's 1.0.3) runs both services from the image the
// tests built (tagged kubernetes-mcp-server:latest, so no build): each
// answers /health and its health check, serves the plugins its own
// configuration allows (pod-list in staging only) and runs one, with its
// configuration read-only. Then `down -v` removes the containers and the
// volumes.
func TestComposeUpWithPodmanCompose(t *testing.T) {
	builtImage(t) // and tagged :latest
	project := fmt.Sprintf("kmcp-compose-test-%d", os.Getpid())
	dir := t.TempDir()
	tokens := map[string]string{"production": randomToken(t), "staging": randomToken(t)}
	ports := map[string]int{"production": freePort(t), "staging": freePort(t)}
	env := composeEnv(map[string]string{
		"KMCP_PRODUCTION_TOKEN_FILE": tokenFile(t, dir, "production.token", tokens["production"]),
		"KMCP_STAGING_TOKEN_FILE":    tokenFile(t, dir, "staging.token", tokens["staging"]),
		"KMCP_PRODUCTION_ADDRESS":    fmt.Sprintf("127.0.0.1:%d", ports["production"]),
		"KMCP_STAGING_ADDRESS":       fmt.Sprintf("127.0.0.1:%d", ports["staging"]),
	})
	compose := func(args ...string) (string, error) {
		cmd := exec.Command("podman-compose", append([]string{"-p", project, "-f", "docker-compose.yml"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range []string{"production", "staging"} {
				logs, _ := exec.Command("podman", "logs", project+"_"+s+"_1").CombinedOutput()
				t.Logf("%s log:\n%s", s, logs)
			}
		}
		if out, err := compose("down", "-v", "-t", "5"); err != nil {
			t.Errorf("podman-compose down: %v\n%s", err, out)
		}
		// podman-compose 1.0.3 leaves the project's network.
		exec.Command("podman", "network", "rm", "-f", project+"_default").Run()
		left, _ := podman("ps", "-a", "-q", "--filter", "label=io.podman.compose.project="+project)
		vols, _ := podman("volume", "ls", "-q", "--filter", "label=io.podman.compose.project="+project)
		if strings.TrimSpace(left+vols) != "" {
			t.Errorf("left after down: containers %q, volumes %q", left, vols)
			for _, id := range strings.Fields(left) {
				podman("rm", "-f", id)
			}
			for _, v := range strings.Fields(vols) {
				podman("volume", "rm", "-f", v)
			}
		}
	})
	start := time.Now()
	if out, err := compose("up", "-d", "--no-build"); err != nil {
		t.Fatalf("podman-compose up: %v\n%s", err, out)
	}

	manifest := exampleManifest(t)
	for _, name := range []string{"production", "staging"} {
		t.Run(name, func(t *testing.T) {
			id := project + "_" + name + "_1"
			base := fmt.Sprintf("http://127.0.0.1:%d", ports[name])
			waitHealthy(t, id, base)
			t.Logf("%s healthy %s after up", name, time.Since(start).Round(100*time.Millisecond))
			if h := getHealth(t, base, tokens[name]); !h.WasmSandbox || h.Audit != "ok" {
				t.Errorf("/health: %+v", h)
			}
			if _, err := podman("healthcheck", "run", id); err != nil {
				t.Errorf("health check: %v", err)
			}
			cs := connect(t, base, tokens[name])
			tools := toolNames(t, cs)
			if !tools["plugin_manifest_lint"] || !tools["plugin_score"] || tools["plugin_pod_list"] != (name == "staging") {
				t.Errorf("tools %v", tools)
			}
			res, r := callTool(t, cs, "plugin_manifest_lint", map[string]any{"stdin": manifest})
			if !res.IsError || r.ExitCode != 1 || r.Sandbox != "wasm" || !strings.Contains(r.Output, `uses the "latest" tag`) {
				t.Errorf("plugin_manifest_lint: isError=%v %+v\n%s", res.IsError, r, resultText(res))
			}
			// As the file's owner (root, without capabilities), so that
			// only the mount's read-only flag can refuse.
			out, err := exec.Command("podman", "exec", "--user", "0", id, "/bin/bash", "-c", "echo >>"+configPath).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "Read-only file system") {
				t.Errorf("a write to the mounted configuration: %v %s", err, out)
			}
		})
	}
}
