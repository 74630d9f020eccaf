package container

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func profileCall(withCluster bool) Call {
	return tierProfileCall(IsolationRunc, withCluster)
}

func tierProfileCall(tier Isolation, withCluster bool) Call {
	cfg := Config{Rootfs: "/image", StateDir: "/state", User: 65534, Limits: testLimits, Isolation: tier}
	return cfg.CallFor("CALL-ID", "/plugins/kubectl-fixture", []string{"ARGS"}, nil, withCluster)
}

// writablePlaces reads the spec alone: whatever is not mounted "ro" counts.
func TestWritablePlaces(t *testing.T) {
	tmpfs := func(dest string, options ...string) specs.Mount {
		return specs.Mount{Destination: dest, Type: "tmpfs", Source: "tmpfs", Options: options}
	}
	readOnlyRoot := &specs.Root{Path: "rootfs", Readonly: true}
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want []string
	}{
		{"writable root", &specs.Spec{Root: &specs.Root{Path: "rootfs"}}, []string{"/"}},
		{"read-only root, no mounts", &specs.Spec{Root: readOnlyRoot}, nil},
		{"ro mounts", &specs.Spec{Root: readOnlyRoot, Mounts: []specs.Mount{
			tmpfs("/run", "nosuid", "ro"), {Destination: "/proc", Type: "proc", Options: []string{"ro", "nosuid"}},
			{Destination: "/data", Type: "bind", Source: "/host", Options: []string{"rbind", "ro"}},
		}}, nil},
		// A root-owned 0755 tmpfs is writable as far as the spec can tell:
		// runc gives it the mode of the folder it covers.
		{"rw mounts, whatever their mode", &specs.Spec{Root: readOnlyRoot, Mounts: []specs.Mount{
			tmpfs("/tmp", "mode=1777"), tmpfs("/mnt", "mode=0755"), {Destination: "/dev/pts", Type: "devpts"},
			{Destination: "/data", Type: "bind", Source: "/host", Options: []string{"rbind"}},
		}}, []string{"/data", "/dev/pts", "/mnt", "/tmp"}},
		{"the last of ro and rw wins", &specs.Spec{Root: readOnlyRoot, Mounts: []specs.Mount{
			tmpfs("/a", "ro", "rw"), tmpfs("/b", "rw", "ro"),
		}}, []string{"/a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := writablePlaces(tc.spec); !slices.Equal(got, tc.want) {
				t.Errorf("writablePlaces = %q, want %q", got, tc.want)
			}
		})
	}
}

// The profile's writable places are /tmp and /dev/shm, each a named step,
// so `profile show` lists every one; containerd's other default mounts are
// read-only and /dev/mqueue is gone.
func TestEveryWritablePlaceIsANamedStep(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testEveryWritablePlaceIsANamedStep(t, tier) })
	}
}

func testEveryWritablePlaceIsANamedStep(t *testing.T, tier Isolation) {
	for _, withCluster := range []bool{false, true} {
		call := tierProfileCall(tier, withCluster)
		spec, err := Spec(context.Background(), "kmcp-test", call)
		if err != nil {
			t.Fatal(err)
		}
		places := writablePlaces(spec)
		if want := append(slices.Clone(rootOnly[tier]), "/dev/shm", "/tmp"); !slices.Equal(places, want) {
			t.Errorf("cluster %v: writable places %q, want %q", withCluster, places, want)
		}
		var names []string
		for _, o := range Profile(call) {
			names = append(names, o.Name)
		}
		for _, p := range places {
			if !slices.ContainsFunc(names, func(n string) bool {
				return strings.HasPrefix(n, p+": ") && strings.Contains(n, "writable")
			}) {
				t.Errorf("cluster %v: no profile step names the writable place %s:\n%s", withCluster, p, strings.Join(names, "\n"))
			}
		}
		for _, m := range spec.Mounts {
			if m.Destination == "/dev/mqueue" {
				t.Errorf("cluster %v: /dev/mqueue is mounted: %+v", withCluster, m)
			}
			if m.Destination == "/dev/shm" && !(slices.Contains(m.Options, "noexec") && slices.Contains(m.Options, "nosuid") &&
				slices.Contains(m.Options, "nodev") && slices.Contains(m.Options, fmt.Sprintf("size=%dm", shmMiB))) {
				t.Errorf("cluster %v: /dev/shm options %q", withCluster, m.Options)
			}
		}
	}
}

// Under gVisor the profile says so first, with the flags runsc runs with,
// and the spec carries them; the plugin's process limit is RLIMIT_NPROC
// (gVisor's kernel counts it) below a pids cgroup for gVisor's host
// threads; the folders files are bind-mounted into are the call's own,
// never the shared image's (gVisor's gofer makes mount points on the host).
func TestGVisorProfile(t *testing.T) {
	for _, withCluster := range []bool{false, true} {
		call := tierProfileCall(IsolationGVisor, withCluster)
		opts := Profile(call)
		if want := "kernel: gVisor's runsc --platform=ptrace --network=host --oci-seccomp"; !strings.HasPrefix(opts[0].Name, want) {
			t.Errorf("first step %q, want it to start with %q", opts[0].Name, want)
		}
		spec, err := Spec(context.Background(), "kmcp-test", call)
		if err != nil {
			t.Fatal(err)
		}
		if got := spec.Annotations[runscFlagsAnnotation]; got != strings.Join(runscFlags, " ") {
			t.Errorf("annotation %s = %q", runscFlagsAnnotation, got)
		}
		if !slices.Contains(spec.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NPROC", Hard: uint64(testLimits.Pids), Soft: uint64(testLimits.Pids)}) ||
			!slices.Contains(spec.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: testLimits.NoFile, Soft: testLimits.NoFile}) {
			t.Errorf("rlimits %+v", spec.Process.Rlimits)
		}
		if got := spec.Linux.Resources.Pids.Limit; got != gvisorHostPids(testLimits.Pids) {
			t.Errorf("pids cgroup limit %d, want %d", got, gvisorHostPids(testLimits.Pids))
		}
		want := map[string]string{PluginDir: "/state/calls/CALL-ID/mounts/plugin"}
		if withCluster {
			want["/run/kube"] = "/state/calls/CALL-ID/mounts/kube"
		}
		for _, m := range spec.Mounts {
			if source, ok := want[m.Destination]; ok {
				if m.Type != "bind" || m.Source != source || !mountedReadOnly(m) {
					t.Errorf("%s mounted as %+v, want a read-only bind of %s", m.Destination, m, source)
				}
				delete(want, m.Destination)
			}
		}
		if len(want) != 0 {
			t.Errorf("not mounted: %v", want)
		}
		if dirs := call.callMountFolders(); len(dirs) != 1+map[bool]int{false: 0, true: 1}[withCluster] {
			t.Errorf("mount folders %q", dirs)
		}
	}
	// runc's profile has none of it.
	for _, o := range Profile(profileCall(true)) {
		if strings.Contains(o.Name, "gVisor") {
			t.Errorf("runc profile step %q", o.Name)
		}
	}
}
