package escape

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
	sandboxkube "github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes"
)

// hostState counts what calls could leave behind, on the host and in
// this process.
type hostState map[string]int

func (h *harness) state(t *testing.T, ctrd *containerd.Client) hostState {
	if h.tier.pod {
		return h.podState(t)
	}
	s := hostState{}
	if h.tier.native {
		ctx := namespaces.WithNamespace(context.Background(), h.namespace)
		cs, err := ctrd.Containers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s["containers"] = len(cs)
		tasks, err := ctrd.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		s["tasks"] = len(tasks.Tasks)
		n := 0
		ctrd.SnapshotService("overlayfs").Walk(ctx, func(context.Context, snapshots.Info) error { n++; return nil })
		s["snapshots"] = n
		for _, dir := range []string{"netns", "calls"} {
			entries, _ := os.ReadDir(filepath.Join(h.stateDir, dir))
			s["state "+dir] = len(entries)
		}
		for _, controller := range []string{"pids", "memory", "cpu", "devices", "freezer", "unified"} {
			entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", controller, h.namespace))
			s["cgroups"] += len(entries)
		}
	} else {
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "kmcp-wasm-*"))
		s["wasm call folders"] = len(dirs)
	}
	return s
}

// podState counts what a kubernetes tier's calls could leave in the
// sandbox cluster: its Pods and NetworkPolicies, and every Secret and
// ConfigMap of the sandbox namespace.
func (h *harness) podState(t *testing.T) hostState {
	node := testenv.TestKubeNode(t)
	kube := kubernetes.NewForConfigOrDie(node.Config)
	ctx := context.Background()
	ours := metav1.ListOptions{LabelSelector: sandboxkube.LabelInstance + "=" + h.instance}
	s := hostState{}
	for what, list := range map[string]func() (int, error){
		"pods": func() (int, error) {
			l, err := kube.CoreV1().Pods(node.Namespace).List(ctx, ours)
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		},
		"network policies": func() (int, error) {
			l, err := kube.NetworkingV1().NetworkPolicies(node.Namespace).List(ctx, ours)
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		},
		"secrets": func() (int, error) {
			l, err := kube.CoreV1().Secrets(node.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		},
		"config maps": func() (int, error) {
			l, err := kube.CoreV1().ConfigMaps(node.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		},
	} {
		n, err := list()
		if err != nil {
			t.Fatalf("list %s of the sandbox cluster: %v", what, err)
		}
		s[what] = n
	}
	return s
}

// processState counts what this process holds (descriptors, goroutines)
// and the host's processes and mounts that are the suite's: other test
// binaries run beside this one and make their own.
func processState(namespaces []string) hostState {
	s := hostState{}
	fds, _ := os.ReadDir("/proc/self/fd")
	s["open descriptors"] = len(fds)
	s["goroutines"] = goruntime.NumGoroutine()
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		for _, ns := range namespaces {
			if strings.Contains(line, ns) {
				s["mounts"]++
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil {
			continue
		}
		argv0 := filepath.Base(strings.SplitN(string(b), "\x00", 2)[0])
		for _, ns := range namespaces {
			if strings.Contains(string(b), ns) {
				s["processes ("+argv0+")"]++
			}
		}
		if strings.Contains(string(b), "kmcp-escape-marker") {
			s["plugin processes"]++
		}
	}
	return s
}

// grown lists what there is more of than before. Less is not a leak: an
// idle connection of the warm-up calls may close meanwhile.
func (s hostState) grown(before hostState) []string {
	var out []string
	for k, v := range s {
		if v > before[k] {
			out = append(out, fmt.Sprintf("%s: %d before, %d after", k, before[k], v))
		}
	}
	slices.Sort(out)
	return out
}

// The kinds of call the leak run mixes, by i%20.
func callKind(i int, native bool) (kind string, args []string, want runtime.Status) {
	switch n := i % 20; {
	case n <= 10:
		return "ok", []string{"env"}, runtime.StatusOK
	case n <= 13:
		return "failure", []string{"no-such-case"}, runtime.StatusFailed
	case n <= 15:
		return "API request", []string{"http", "GET", "/api/v1/namespaces/" + ns + "/pods"}, runtime.StatusOK
	case n == 16:
		return "timeout", []string{"spin"}, runtime.StatusTimeout
	case n <= 18:
		return "cancelled", []string{"spin"}, runtime.StatusCancelled
	case native:
		return "daemon left behind", []string{"daemon", "kmcp-escape-marker-leak"}, runtime.StatusOK
	default:
		return "files held open", []string{"fd-exhaust"}, runtime.StatusOK
	}
}

// After 1,000 mixed calls spread over every tier (successes, failures, API
// requests, timeouts, cancellations, daemons left behind, floods),
// everything is back where it started: containers, tasks, snapshots,
// network namespaces, call folders, cgroups, mounts, descriptors,
// goroutines and processes.
func TestNoLeaksAfter1000MixedCalls(t *testing.T) {
	tg := hostTargets(t)
	ctrd, err := containerd.New(testenv.TestContainerd(t).Address)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrd.Close()
	// Per tier one runtime whose calls end by themselves and one whose
	// time limit is short, for the timeouts: a loaded machine must not
	// turn the first kind into timeouts too.
	var hs, short []*harness
	var namespaces []string
	for _, tr := range tiers {
		h, s := newHarnessWith(t, tr, tg, "", time.Minute, ""), newHarnessWith(t, tr, tg, "", time.Second, "-short")
		for _, h := range []*harness{h, s} {
			// One call each first: lazily made connections and caches are not
			// leaks. On a loaded machine the short runtime's 1 s may end its
			// warm-up call as a timeout, which warms it just the same.
			res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "hostile", Args: []string{"http", "GET", "/api/v1/namespaces/" + ns + "/pods"}})
			if err != nil || res.Status != runtime.StatusOK && !(h == s && res.Status == runtime.StatusTimeout) {
				t.Fatalf("%s: warm-up call: %v %+v", tr.name, err, res)
			}
			namespaces = append(namespaces, h.namespace)
		}
		hs, short = append(hs, h), append(short, s)
	}
	// The warm pools refill after the warm-up calls: what they hold once
	// they are full is the baseline, and what they hold at the end.
	var before map[string]hostState
	for settled := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		now := map[string]hostState{"process": processState(namespaces)}
		for _, h := range append(hs, short...) {
			now[h.namespace] = h.state(t, ctrd)
		}
		if reflect.DeepEqual(now, before) || time.Now().After(settled) {
			break
		}
		before = now
	}

	const calls = 1000
	var mu sync.Mutex
	outcomes := map[string]int{}
	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				h := hs[i%len(hs)]
				kind, args, want := callKind(i/len(hs), h.tier.native)
				if kind == "timeout" {
					h = short[i%len(hs)]
				}
				ctx, cancel := context.WithCancel(context.Background())
				if kind == "cancelled" {
					time.AfterFunc(300*time.Millisecond, cancel)
				}
				res, err := h.rt.Execute(ctx, runtime.Call{Plugin: "hostile", Args: args})
				cancel()
				got := "error: " + fmt.Sprint(err)
				if err == nil {
					got = string(res.Status)
				}
				mu.Lock()
				if got == string(want) {
					outcomes[h.tier.name+" "+kind]++
				} else {
					outcomes[fmt.Sprintf("%s %s: want %s, got %s", h.tier.name, kind, want, got)]++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range calls {
		work <- i
	}
	close(work)
	wg.Wait()
	total := 0
	for k, n := range outcomes {
		if strings.Contains(k, "want") {
			t.Errorf("%d calls: %s", n, k)
		}
		total += n
	}
	t.Logf("outcomes of %d calls: %v", total, outcomes)

	var left []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		left = processState(namespaces).grown(before["process"])
		for _, h := range append(hs, short...) {
			for _, d := range h.state(t, ctrd).grown(before[h.namespace]) {
				left = append(left, h.namespace+": "+d)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range left {
		t.Errorf("left behind: %s", l)
	}
	if len(left) > 0 {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines now:\n%s", buf[:goruntime.Stack(buf, true)])
	}
	if n := len(hostProcessesWith("kmcp-escape-marker-leak")); n != 0 {
		t.Errorf("%d daemons outlived their calls", n)
	}
	leaked := len(left)
	record(reportRow{Category: "leaks", Case: fmt.Sprintf("%d mixed calls over every tier", calls), Tier: "all",
		Expected: "containers, tasks, snapshots, network namespaces, call folders, cgroups, mounts, descriptors, goroutines and processes, and the sandbox namespace's pods, network policies, secrets and config maps, back where they started",
		Observed: fmt.Sprintf("%d things left behind", leaked), Held: leaked == 0 && !t.Failed()})
}
