package clusters_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// Each cluster from the registry reaches its own API server: it sees its own
// namespace and not the other cluster's.
func TestRegistryReachesEachRealCluster(t *testing.T) {
	env := testenv.TestClusters(t)
	reg, err := clusters.Load(clusters.Options{KubeconfigDir: env.KubeconfigDir, DefaultCluster: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Names(); !slices.Equal(got, []string{"alpha", "beta"}) {
		t.Fatalf("Names() = %v, want [alpha beta]", got)
	}
	for _, want := range env.All {
		c, err := reg.Get(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		names := namespaces(t, c)
		for _, other := range env.All {
			has := slices.Contains(names, other.Namespace)
			if has != (other.Name == want.Name) {
				t.Errorf("cluster %s: namespaces %v: has %s = %v", want.Name, names, other.Namespace, has)
			}
		}
	}
	def, err := reg.Get("")
	if err != nil || def.Name != "alpha" {
		t.Fatalf("Get(\"\") = %v, %v; want the default cluster alpha", def, err)
	}
}

func writeKubeconfig(t *testing.T, path string, contexts ...string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for i, name := range contexts {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:" + string(rune('1'+i)) + "443"}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "token-" + name}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	if len(contexts) > 0 {
		cfg.CurrentContext = contexts[0]
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	clusterDir := filepath.Join(dir, "clusters")
	os.Mkdir(clusterDir, 0o755)
	writeKubeconfig(t, filepath.Join(clusterDir, "prod.yaml"), "whatever")
	writeKubeconfig(t, filepath.Join(clusterDir, "staging.conf"), "x")
	os.WriteFile(filepath.Join(clusterDir, ".hidden"), []byte("not yaml: ["), 0o644)
	os.Mkdir(filepath.Join(clusterDir, "..data"), 0o755)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, kubeconfig, "dev", "qa")
	dupDir := filepath.Join(dir, "dup")
	os.Mkdir(dupDir, 0o755)
	writeKubeconfig(t, filepath.Join(dupDir, "dev.yaml"), "dev")
	badDir := filepath.Join(dir, "bad")
	os.Mkdir(badDir, 0o755)
	os.WriteFile(filepath.Join(badDir, "broken.yaml"), []byte("clusters: [\n"), 0o644)

	tests := []struct {
		name        string
		opts        clusters.Options
		wantNames   []string
		wantDefault string
		wantErr     string
	}{
		{name: "dir", opts: clusters.Options{KubeconfigDir: clusterDir}, wantNames: []string{"prod", "staging"}},
		{name: "dir with default", opts: clusters.Options{KubeconfigDir: clusterDir, DefaultCluster: "staging"},
			wantNames: []string{"prod", "staging"}, wantDefault: "staging"},
		{name: "kubeconfig contexts, current is default", opts: clusters.Options{Kubeconfig: kubeconfig},
			wantNames: []string{"dev", "qa"}, wantDefault: "dev"},
		{name: "dir and kubeconfig", opts: clusters.Options{KubeconfigDir: clusterDir, Kubeconfig: kubeconfig, DefaultCluster: "prod"},
			wantNames: []string{"dev", "prod", "qa", "staging"}, wantDefault: "prod"},
		{name: "single cluster is the default", opts: clusters.Options{KubeconfigDir: dupDir}, wantNames: []string{"dev"}, wantDefault: "dev"},
		{name: "unknown default", opts: clusters.Options{KubeconfigDir: clusterDir, DefaultCluster: "nope"},
			wantErr: `default_cluster "nope" is not a known cluster (known: prod, staging)`},
		{name: "missing dir", opts: clusters.Options{KubeconfigDir: filepath.Join(dir, "missing")}, wantErr: "kubeconfig_dir: open"},
		{name: "dir is a file", opts: clusters.Options{KubeconfigDir: kubeconfig}, wantErr: "kubeconfig_dir:"},
		{name: "broken file", opts: clusters.Options{KubeconfigDir: badDir}, wantErr: `cluster "broken"`},
		{name: "defined twice", opts: clusters.Options{KubeconfigDir: dupDir, Kubeconfig: kubeconfig}, wantErr: `cluster "dev" is defined twice`},
		{name: "missing kubeconfig", opts: clusters.Options{Kubeconfig: filepath.Join(dir, "nope")}, wantErr: "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := clusters.Load(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := reg.Names(); !slices.Equal(got, tt.wantNames) {
				t.Errorf("Names() = %v, want %v", got, tt.wantNames)
			}
			if got := reg.Default(); got != tt.wantDefault {
				t.Errorf("Default() = %q, want %q", got, tt.wantDefault)
			}
		})
	}
}

// A cluster's kubeconfig holds that cluster only, so it can be handed to a
// plugin without the others' credentials.
func TestClusterKubeconfigHoldsOnlyItsCluster(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeKubeconfig(t, kubeconfig, "dev", "qa")
	reg, err := clusters.Load(clusters.Options{Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	c, err := reg.Get("qa")
	if err != nil {
		t.Fatal(err)
	}
	data, err := clientcmd.Write(*c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "token-dev") || !strings.Contains(string(data), "token-qa") {
		t.Errorf("kubeconfig of qa:\n%s", data)
	}
	if _, err := reg.Get("prod"); err == nil || !strings.Contains(err.Error(), `unknown cluster "prod" (known: dev, qa)`) {
		t.Errorf("Get(prod) err = %v", err)
	}
}
