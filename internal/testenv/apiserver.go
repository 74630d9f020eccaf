package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Cluster is a real kube-apiserver backed by its own etcd.
type Cluster struct {
	Name string
	// Server is the API server's https URL on 127.0.0.1.
	Server string
	// Token is an administrator's bearer token.
	Token string
	// CAData is the PEM certificate that signs the server's certificate.
	CAData []byte
	// Namespace exists in this cluster and in no other test cluster.
	Namespace string
	// Kubeconfig is a file with one context, named after the cluster.
	Kubeconfig string
	REST       *rest.Config
}

// Clusters are the two shared test clusters.
type Clusters struct {
	All []*Cluster
	// KubeconfigDir holds one kubeconfig file per cluster, NAME.yaml.
	KubeconfigDir string
}

var (
	clustersOnce sync.Once
	clusters     *Clusters
	clustersErr  error
)

// TestClusters returns two real clusters, "alpha" and "beta", each with a
// token and a namespace of its own, started on first use and shared by the
// test binary. Without them the test fails: it never skips.
func TestClusters(t testing.TB) *Clusters {
	t.Helper()
	clustersOnce.Do(func() { clusters, clustersErr = startClusters("alpha", "beta") })
	if clustersErr != nil {
		t.Fatalf("test clusters: %v", clustersErr)
	}
	return clusters
}

func startClusters(names ...string) (*Clusters, error) {
	bin, err := KubeAPIServer()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kmcp-clusters-")
	if err != nil {
		return nil, err
	}
	atExit(func() { os.RemoveAll(dir) })
	kubeconfigs := filepath.Join(dir, "kubeconfigs")
	if err := os.Mkdir(kubeconfigs, 0o700); err != nil {
		return nil, err
	}
	out := &Clusters{All: make([]*Cluster, len(names)), KubeconfigDir: kubeconfigs}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.All[i], errs[i] = startCluster(bin, filepath.Join(dir, name), kubeconfigs, name)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// KubeAPIServer returns the cached kube-apiserver binary, building it from
// the Go module proxy the first time on this machine.
func KubeAPIServer() (string, error) {
	root, err := images.RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "build-kube-apiserver.sh"))
	cmd.Stderr = os.Stderr
	path, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build kube-apiserver: %w", err)
	}
	return strings.TrimSpace(string(path)), nil
}

func startCluster(bin, dir, kubeconfigDir, name string) (*Cluster, error) {
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o700); err != nil {
		return nil, err
	}
	etcd, etcdURL, err := startEtcd(dir, name)
	if err != nil {
		return nil, err
	}
	atExit(func() { etcd.Stop(5 * time.Second) })

	token := randomHex(16)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	api, err := start("kube-apiserver "+name, filepath.Join(dir, "kube-apiserver.log"), bin,
		"--etcd-servers="+etcdURL,
		"--endpoint-reconciler-type=none",
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey,
		"--cert-dir="+certDir,
		fmt.Sprintf("--secure-port=%d", port),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--service-cluster-ip-range=10.96.0.0/24",
		// No controller-manager runs, so no service account would ever exist for pods.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
	)
	if err != nil {
		return nil, err
	}
	atExit(func() { api.Stop(5 * time.Second) })

	c := &Cluster{Name: name, Server: fmt.Sprintf("https://127.0.0.1:%d", port), Token: token, Namespace: "only-" + name}
	err = waitFor(api, 90*time.Second, func() error {
		// Read again on every try: a read while kube-apiserver still writes
		// its self-signed certificate (serving certificate, then its CA)
		// would otherwise trust a partial file for good, and never verify.
		ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
		if err != nil {
			return err
		}
		c.CAData = ca
		c.REST = &rest.Config{Host: c.Server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
		return readyz(c.REST)
	})
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(c.REST)
	if err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.Namespace}}
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("cluster %s: create namespace: %w", name, err)
	}
	c.Kubeconfig = filepath.Join(kubeconfigDir, name+".yaml")
	if err := clientcmd.WriteToFile(c.kubeconfig(), c.Kubeconfig); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) kubeconfig() clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos[c.Name] = &clientcmdapi.AuthInfo{Token: c.Token}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
	cfg.CurrentContext = c.Name
	return *cfg
}

func readyz(cfg *rest.Config) error {
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: transport, Timeout: 2 * time.Second}).Get(cfg.Host + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

func startEtcd(dir, name string) (*Process, string, error) {
	client, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peer, err := freePort()
	if err != nil {
		return nil, "", err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	p, err := start("etcd "+name, filepath.Join(dir, "etcd.log"), "etcd",
		"--name="+name,
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster="+name+"="+peerURL,
	)
	if err != nil {
		return nil, "", err
	}
	err = waitFor(p, 30*time.Second, func() error {
		resp, err := (&http.Client{Timeout: time.Second}).Get(clientURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health answered %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, "", err
	}
	return p, clientURL, nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
