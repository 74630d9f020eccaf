package kubernetes

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// BenchmarkPodCall measures on the test node, in one run: a bare Pod of
// the sandbox image (create → Succeeded, the anchor); a cold call (no
// pool) of a plugin that exits at once; a direct exec of the same plugin
// on the host; a warm call (a pool of 1, refilled between samples); and
// the throughput of calls with 8 in flight, warm (a pool of 8) and cold.
// Run it once (-benchtime 1x): it takes its own samples.
func BenchmarkPodCall(b *testing.B) {
	const rounds, inFlight = 15, 8
	cold, node := newBackendLogging(b, 0, hclog.Warn)
	warm, _ := newBackendLogging(b, 1, hclog.Warn)
	many, _ := newBackendLogging(b, inFlight, hclog.Warn)
	spec := plugin(b, "exit 0")
	spec.KeepWarm = true
	ctx := context.Background()
	call := func(backend *Backend, wantWarm bool) time.Duration {
		start := time.Now()
		res, err := backend.Run(ctx, spec)
		d := time.Since(start)
		if err != nil || res.ExitCode != 0 || res.Warm != wantWarm {
			b.Fatalf("call: %v %+v, want warm %v", err, res, wantWarm)
		}
		return d
	}
	call(warm, false) // fills the pool
	kube := kubernetes.NewForConfigOrDie(node.Config)
	var bare, coldCalls, direct, warmCalls []time.Duration
	b.ResetTimer()
	for i := range rounds {
		bare = append(bare, barePod(b, kube, node, i))
		coldCalls = append(coldCalls, call(cold, false))
		start := time.Now()
		if out, err := exec.Command(spec.Plugin).CombinedOutput(); err != nil {
			b.Fatalf("direct exec: %v %s", err, out)
		}
		direct = append(direct, time.Since(start))
		warm.Settle() // the refill is not the next call's
		warmCalls = append(warmCalls, call(warm, true))
	}
	throughput := func(backend *Backend, calls int) float64 {
		backend.Settle()
		work := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					if res, err := backend.Run(ctx, spec); err != nil || res.ExitCode != 0 {
						b.Errorf("call in flight: %v %+v", err, res)
					}
				}
			}()
		}
		for i := range calls {
			work <- i
		}
		close(work)
		wg.Wait()
		return float64(calls) / time.Since(start).Seconds()
	}
	warmRate, coldRate := throughput(many, 6*inFlight), throughput(cold, 3*inFlight)
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p50, p95 := func(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }, func(ds []time.Duration) time.Duration { return quantile(ds, 0.95) }
	b.ReportMetric(ms(p50(bare)), "bare-pod-p50-ms")
	b.ReportMetric(ms(p95(bare)), "bare-pod-p95-ms")
	b.ReportMetric(ms(p50(coldCalls)), "cold-p50-ms")
	b.ReportMetric(ms(p95(coldCalls)), "cold-p95-ms")
	b.ReportMetric(ms(p50(direct)), "direct-p50-ms")
	b.ReportMetric(ms(p50(warmCalls)-p50(direct)), "warm-overhead-p50-ms")
	b.ReportMetric(ms(p95(warmCalls)-p95(direct)), "warm-overhead-p95-ms")
	b.ReportMetric(warmRate, "warm-8-in-flight-calls/s")
	b.ReportMetric(coldRate, "cold-8-in-flight-calls/s")
	fmt.Printf("kubernetes backend, %d rounds on one node:\n"+
		"  bare Pod, create → Succeeded  p50 %8s  p95 %8s\n"+
		"  cold call                     p50 %8s  p95 %8s  (%.2fx the bare Pod)\n"+
		"  direct exec                   p50 %8s\n"+
		"  warm call                     p50 %8s  p95 %8s  (overhead p50 %s)\n"+
		"  8 in flight: warm %.1f calls/s, cold %.1f calls/s\n",
		rounds, p50(bare).Round(time.Millisecond), p95(bare).Round(time.Millisecond),
		p50(coldCalls).Round(time.Millisecond), p95(coldCalls).Round(time.Millisecond), float64(p50(coldCalls))/float64(p50(bare)),
		p50(direct).Round(time.Microsecond), p50(warmCalls).Round(time.Millisecond), p95(warmCalls).Round(time.Millisecond),
		(p50(warmCalls) - p50(direct)).Round(time.Millisecond), warmRate, coldRate)
}

// barePod is the time from creating a Pod that runs /bin/true in the
// sandbox image to seeing it Succeeded: what the kubelet itself takes.
func barePod(b *testing.B, kube kubernetes.Interface, node *testenv.KubeNode, i int) time.Duration {
	ctx := context.Background()
	pods := kube.CoreV1().Pods(node.Namespace)
	name := fmt.Sprintf("kmcp-bench-bare-%d", i)
	start := time.Now()
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	if _, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: node.NodeName, RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: ptr.To[int64](0),
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "bare", Image: node.SandboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"/bin/true"}}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	defer pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("watch of %s ended", name)
			}
			if pod, _ := ev.Object.(*corev1.Pod); pod != nil {
				switch pod.Status.Phase {
				case corev1.PodSucceeded:
					return time.Since(start)
				case corev1.PodFailed:
					b.Fatalf("bare pod failed: %+v", pod.Status)
				}
			}
		case <-timeout:
			b.Fatalf("bare pod %s did not succeed in a minute", name)
		}
	}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
