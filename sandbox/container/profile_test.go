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
	cfg := Config{Rootfs: "/image", StateDir: "/state", User: 65534, Limits: testLimits}
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
	for _, withCluster := range []bool{false, true} {
		call := profileCall(withCluster)
		spec, err := Spec(context.Background(), "kmcp-test", call)
		if err != nil {
			t.Fatal(err)
		}
		places := writablePlaces(spec)
		if want := []string{"/dev/shm", "/tmp"}; !slices.Equal(places, want) {
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
