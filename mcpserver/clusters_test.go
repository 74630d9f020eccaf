package mcpserver

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

func rancherCluster(id, name string) testenv.RancherCluster {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: "https://" + name + ".example.invalid:6443"}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "kubeconfig-user:" + id}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		panic(err)
	}
	return testenv.RancherCluster{ID: id, Name: name, State: "active", Kubeconfig: data}
}

// The server reads the clusters live: when Rancher's change, /health and
// every description naming them change, and clients get list_changed.
func TestClusterChangesReachToolsAndHealth(t *testing.T) {
	fake := testenv.StartRancher(t, rancherCluster("c-prod1", "prod"))
	src, err := clusters.NewRancher(clusters.RancherOptions{URL: fake.URL, Token: fake.Token, Dir: filepath.Join(t.TempDir(), "rancher")})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureRancher(t, "none", src)
	c := connect(t, f.srv, "2025-06-18")
	const changed = "notifications/tools/list_changed"
	if h := f.srv.Health(); !slices.Equal(h.Clusters, []string{"c1", "c2"}) || h.Rancher == nil || h.Rancher.Status != "pending" {
		t.Fatalf("health before the first fetch: %+v (rancher %+v)", h, h.Rancher)
	}
	// describes: the cluster parameters of plugins_execute and a plugin's
	// tool, and plugins_execute's description, all name cluster.
	describes := func(cluster string) bool {
		tools := toolsByName(t, c)
		for _, name := range []string{"plugins_execute", "plugin_echo"} {
			param := tools[name].InputSchema.Properties["cluster"].(map[string]any)
			if !strings.Contains(param["description"].(string), cluster) {
				return false
			}
		}
		return strings.Contains(tools["plugins_execute"].Description, cluster)
	}
	if describes("prod") {
		t.Fatal("prod is described before Rancher was asked")
	}

	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "list_changed after Rancher added a cluster", func() bool { return c.count(changed) == 1 })
	if h := f.srv.Health(); !slices.Equal(h.Clusters, []string{"c1", "c2", "prod"}) || h.Rancher.Status != "ok" || h.Rancher.Clusters != 1 {
		t.Errorf("health: %+v (rancher %+v)", h, h.Rancher)
	}
	if !describes("Clusters: c1, c2, prod.") {
		t.Error("the descriptions do not name prod")
	}

	// A failure changes nothing but the status.
	fake.SetFault(testenv.RancherServerError)
	if err := src.Refresh(context.Background()); err == nil {
		t.Fatal("refresh against a failing Rancher succeeded")
	}
	if h := f.srv.Health(); !slices.Equal(h.Clusters, []string{"c1", "c2", "prod"}) || h.Rancher.Status != "error" || !strings.Contains(h.Rancher.Error, "500") {
		t.Errorf("health after a failure: %+v (rancher %+v)", h, h.Rancher)
	}

	fake.SetFault(testenv.RancherHealthy)
	fake.SetClusters()
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "list_changed after Rancher removed a cluster", func() bool { return c.count(changed) == 2 })
	if h := f.srv.Health(); !slices.Equal(h.Clusters, []string{"c1", "c2"}) {
		t.Errorf("health after the removal: %+v", h)
	}
	if describes("prod") {
		t.Error("a description still names prod")
	}
	res := call(t, c, "plugins_execute", map[string]any{"plugin": "echo", "cluster": "prod"})
	if !res.IsError || !strings.Contains(text(res), `unknown cluster "prod"`) {
		t.Errorf("a call to the removed cluster: %s", text(res))
	}
}
