package testenv_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// A Pod with the sandbox's hardened spec runs on the node as nobody,
// reaches a listener on the gateway from its own address, runs to
// Succeeded with its log readable, and a running one answers exec; a port
// on the host's loopback stays out of its reach.
func TestKubeNodeRunsAHardenedPod(t *testing.T) {
	begin := time.Now()
	node := testenv.TestKubeNode(t)
	t.Logf("node %s up in %s (node %s, gateway %s, pods %s, image %s)",
		node.NodeName, time.Since(begin).Round(time.Millisecond), node.NodeIP, node.GatewayIP, node.PodCIDR, node.SandboxImage)
	client := kubernetes.NewForConfigOrDie(node.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	gateway, err := net.Listen("tcp", net.JoinHostPort(node.GatewayIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer gateway.Close()
	type visit struct {
		from, line string
	}
	visits := make(chan visit, 1)
	go func() {
		conn, err := gateway.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
		visits <- visit{host, strings.TrimSpace(line)}
	}()
	loopback, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer loopback.Close()
	reachedLoopback := make(chan string, 1)
	go func() {
		if conn, err := loopback.Accept(); err == nil {
			reachedLoopback <- conn.RemoteAddr().String()
			conn.Close()
		}
	}()

	gwPort := gateway.Addr().(*net.TCPAddr).Port
	pod := hardenedPod(node, "kubenode-hardened",
		fmt.Sprintf("id; echo hi; exec 3<>/dev/tcp/%s/%d && echo reached >&3", node.GatewayIP, gwPort))
	created := time.Now()
	if _, err := client.CoreV1().Pods(node.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(client, node.Namespace, pod.Name) })
	done := waitPod(t, ctx, client, node.Namespace, pod.Name, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded
	})
	t.Logf("create → Succeeded: %s", time.Since(created).Round(time.Millisecond))

	select {
	case v := <-visits:
		if v.from != done.Status.PodIP || v.line != "reached" {
			t.Errorf("gateway saw %q from %s, want \"reached\" from the pod's address %s", v.line, v.from, done.Status.PodIP)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the pod never reached the gateway %s:%d", node.GatewayIP, gwPort)
	}
	logs, err := client.CoreV1().Pods(node.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("pods/log: %v", err)
	}
	if !strings.Contains(string(logs), "uid=65534") || !strings.Contains(string(logs), "gid=65534") || !strings.Contains(string(logs), "hi\n") {
		t.Errorf("pod log is not nobody's hi:\n%s", logs)
	}

	sleeper := hardenedPod(node, "kubenode-exec", "exec sleep 600")
	if _, err := client.CoreV1().Pods(node.Namespace).Create(ctx, sleeper, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(client, node.Namespace, sleeper.Name) })
	waitPod(t, ctx, client, node.Namespace, sleeper.Name, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})

	sent := time.Now()
	out, stderr, err := podExec(ctx, node, client, sleeper.Name, "hello over exec\n", "cat")
	if err != nil || out != "hello over exec\n" {
		t.Fatalf("exec cat: %v, stdout %q, stderr %q", err, out, stderr)
	}
	t.Logf("exec round trip (cat): %s", time.Since(sent).Round(time.Millisecond))
	_, _, err = podExec(ctx, node, client, sleeper.Name, "", "bash", "-c", "exit 7")
	var exit utilexec.CodeExitError
	if !errors.As(err, &exit) || exit.Code != 7 {
		t.Errorf("exec exit 7: got %v (%T), want a CodeExitError with code 7", err, err)
	}

	// The pod's 127.0.0.1 is its own; the host's loopback port is not on
	// the gateway either.
	lbPort := loopback.Addr().(*net.TCPAddr).Port
	for _, addr := range []string{"127.0.0.1", node.GatewayIP} {
		_, stderr, err := podExec(ctx, node, client, sleeper.Name, "", "bash", "-c",
			fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", addr, lbPort))
		if !errors.As(err, &exit) {
			t.Errorf("pod connected to %s:%d, the host's loopback listener's port: %v %s", addr, lbPort, err, stderr)
		}
	}
	select {
	case from := <-reachedLoopback:
		t.Errorf("the host's loopback listener was reached from %s", from)
	default:
	}
}

// hardenedPod runs script under bash with the plugin sandbox's spec.
func hardenedPod(node *testenv.KubeNode, name, script string) *corev1.Pod {
	yes, no := true, false
	nobody := int64(65534)
	grace := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: node.Namespace},
		Spec: corev1.PodSpec{
			NodeName:                      node.NodeName,
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &yes,
				RunAsUser:      &nobody,
				RunAsGroup:     &nobody,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           node.SandboxImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/bash", "-c", script},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem:   &yes,
					AllowPrivilegeEscalation: &no,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// waitPod polls the pod until done says so; a pod that fails fails the test.
func waitPod(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, name string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	for {
		p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s: %v", name, err)
		}
		if done(p) {
			return p
		}
		if p.Status.Phase == corev1.PodFailed || ctx.Err() != nil {
			t.Fatalf("pod %s: phase %s, status %+v", name, p.Status.Phase, p.Status.ContainerStatuses)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// podExec runs argv in the pod's container over SPDY; stdin ends (EOF)
// once it is all sent.
func podExec(ctx context.Context, node *testenv.KubeNode, client kubernetes.Interface, pod, stdin string, argv ...string) (string, string, error) {
	req := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(node.Namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "main", Command: argv, Stdin: stdin != "", Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(node.Config, "POST", req.URL())
	if err != nil {
		return "", "", err
	}
	var stdout, stderr bytes.Buffer
	opts := remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}
	if stdin != "" {
		opts.Stdin = strings.NewReader(stdin)
	}
	err = ex.StreamWithContext(ctx, opts)
	return stdout.String(), stderr.String(), err
}

func deletePod(client kubernetes.Interface, ns, name string) {
	zero := int64(0)
	client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}
