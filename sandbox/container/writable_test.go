package container

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// writeProbe walks every folder and regular file of the sandbox, on every
// mount, as the plugin's user, and prints "WRITABLE <path>" for each it can
// write into: a file it can create (or, where access(2) allows, a folder it
// can make) in a folder, a file it can open for writing. It tries rather
// than trusting permission bits. Per-process /proc entries are left out:
// they are the process itself, not a place to keep data.
const writeProbe = `
echo "stream by /dev/stdout" > /dev/stdout
echo "stream by /proc/self/fd/1" > /proc/self/fd/1
probe=.kmcp-probe.$$
dirs=0 files=0
while IFS= read -r -d '' p; do
	if [[ -d $p && ! -L $p ]]; then
		dirs=$((dirs + 1))
		if { : >"$p/$probe"; } 2>/dev/null; then
			echo "WRITABLE $p"
			rm -f "$p/$probe"
		elif [[ -w $p ]] && mkdir "$p/$probe" 2>/dev/null; then
			echo "WRITABLE $p"
			rmdir "$p/$probe"
		fi
	elif [[ -f $p && ! -L $p ]]; then
		files=$((files + 1))
		if { : >>"$p"; } 2>/dev/null; then
			echo "WRITABLE $p"
		fi
	fi
done < <(find / \( -regex '/proc/[0-9]+' -o -path /proc/self -o -path /proc/thread-self \) -prune -o \( -type d -o -type f \) -print0 2>/dev/null)
echo "WALKED $dirs $files"
`

// A hostile plugin can write only where the profile says: every folder or
// file it manages to write into lies in a place writablePlaces computes
// from the spec, and each of those places is really writable.
func TestOnlyTheProfilesWritablePlacesAreWritable(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testOnlyTheProfilesWritablePlacesAreWritable(t, tier) })
	}
}

// rootOnly are the places a tier's spec leaves writable that only root may
// write: under gVisor /dev, which it must not mount read-only (it would
// refuse writes to /dev/null), a root-owned 0755 folder in its own kernel.
var rootOnly = map[Isolation][]string{IsolationGVisor: {"/dev"}}

func testOnlyTheProfilesWritablePlacesAreWritable(t *testing.T, tier Isolation) {
	ctrd := testenv.TestContainerd(t)
	b := newTierBackend(t, ctrd, tier)
	self := plugin(t, writeProbe)
	for _, tc := range []struct {
		name    string
		cluster func() *sandbox.ClusterAccess
	}{
		{"no cluster", func() *sandbox.ClusterAccess { return nil }},
		{"with a cluster", func() *sandbox.ClusterAccess { return accessTo(t, testenv.TestClusters(t).All[0]) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			access := tc.cluster()
			spec, err := Spec(context.Background(), b.cfg.Namespace, b.cfg.CallFor("CALL-ID", self, nil, nil, access != nil))
			if err != nil {
				t.Fatal(err)
			}
			declared := writablePlaces(spec)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			r := runPlugin(t, b, ctx, sandbox.Spec{Plugin: self, Cluster: access})
			if r.err != nil || r.res.ExitCode != 0 {
				t.Fatalf("probe: %v %+v\n%s", r.err, r.res, r.stderr)
			}
			var dirs, files int
			found := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				if path, ok := strings.CutPrefix(line, "WRITABLE "); ok {
					found[path] = true
				}
				fmt.Sscanf(line, "WALKED %d %d", &dirs, &files)
			}
			// The walk reached every mount, the image's /usr and /sys too
			// (gVisor's /sys and /proc are its kernel's, and much smaller).
			least := map[Isolation]int{IsolationRunc: 1000, IsolationGVisor: 300}[tier]
			if dirs < least || files < 1000 {
				t.Fatalf("the probe walked only %d folders and %d files:\n%s", dirs, files, r.stderr)
			}
			t.Logf("walked %d folders and %d files; writable: %q; declared: %q", dirs, files, keys(found), declared)
			for path := range found {
				if !slices.ContainsFunc(declared, func(p string) bool { return path == p || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") }) {
					t.Errorf("%s is writable in the sandbox but not in the profile's writable places %q", path, declared)
				}
			}
			for _, p := range declared {
				if slices.Contains(rootOnly[tier], p) {
					if found[p] {
						t.Errorf("%s is writable by the plugin's user, not root only", p)
					}
					continue
				}
				if !found[p] {
					t.Errorf("the profile declares %s writable, but the probe could not write there", p)
				}
			}
			// Read-only /proc and /dev still let a plugin write its streams by path.
			for _, want := range []string{"stream by /dev/stdout", "stream by /proc/self/fd/1"} {
				if !strings.Contains(r.stdout, want+"\n") {
					t.Errorf("output lacks %q:\n%s", want, r.stderr)
				}
			}
		})
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
