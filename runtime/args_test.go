package runtime

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// refusedSpelling is one argument that must be refused because some parser
// reads it as the cluster flag flag.
type refusedSpelling struct {
	arg  string
	flag string // the cluster flag the message must name
}

// clusterFlagSpellings lists, for every cluster flag, the spellings that
// kubectl, pflag, Go's flag package, argparse and click accept for it.
func clusterFlagSpellings() []refusedSpelling {
	var out []refusedSpelling
	seen := map[string]bool{}
	add := func(arg, f string) {
		if !seen[arg+"\x00"+f] {
			seen[arg+"\x00"+f] = true
			out = append(out, refusedSpelling{arg, f})
		}
	}
	for _, f := range clusterFlags {
		under := strings.ReplaceAll(f, "-", "_")
		for _, name := range []string{f, under, strings.ToUpper(f), strings.ToUpper(under[:1]) + under[1:]} {
			add("--"+name, f)
			add("--"+name+"=x", f)
			add("--"+name+"=", f)
		}
		if i := strings.IndexByte(f, '-'); i >= 0 { // one separator as _, the others as -
			add("--"+f[:i]+"_"+f[i+1:]+"=x", f)
			add("-"+f[:i]+"_"+f[i+1:], f)
		}
		// Node's yargs: camelCase.
		if camel := yargsCamel(f); camel != f {
			add("--"+camel, f)
			add("--"+camel+"=x", f)
		}
		// Go's flag package: one dash.
		for _, name := range []string{f, under} {
			add("-"+name, f)
			add("-"+name+"=x", f)
			add("-"+name+"=", f)
		}
		// argparse and getopt_long: every prefix.
		for n := 1; n < len(f); n++ {
			p := f[:n]
			add("--"+p, f)
			add("--"+p+"=x", f)
			add("--"+strings.ReplaceAll(p, "-", "_")+"=x", f)
			add("--"+strings.ToUpper(p), f)
		}
	}
	add("--=x", "kubeconfig") // argparse: the empty prefix of every long flag
	add("--=", "server")
	// kubectl's -s in every pflag/getopt spelling.
	for _, arg := range []string{
		"-s", "-shttps://evil", "-s=https://evil", "-s=", "-s_x", "-ss",
		"-qs", "-As", "-Aqs", "-qsURL", "-qs=URL", "-Ash", "-wAs", "-=s", "-5s", "-1.5s", "-.s", "-Xs", "-_s",
		"-ojson", "-ojsonpath={.items[*].metadata.name}", "-nkube-system", "-lapp.kubernetes.io/name=x",
		"-test.short", "-ésx",
	} {
		add(arg, "server")
	}
	return out
}

// argvsFor places arg the ways an agent could send it: alone, among
// positionals and values, and after a "--" terminator.
func argvsFor(arg string) [][]string {
	return [][]string{
		{arg},
		{"get", "pods", arg, "value"},
		{"-n", "default", "--", arg},
	}
}

// namesFlag reports whether msg names --f itself, not only a longer flag
// that starts with it (--as in "--as-group").
func namesFlag(msg, f string) bool {
	return regexp.MustCompile(`--` + regexp.QuoteMeta(f) + `($|[^a-z-])`).MatchString(msg)
}

func TestCheckArgsRefusesClusterFlags(t *testing.T) {
	for _, c := range clusterFlagSpellings() {
		for _, argv := range argvsFor(c.arg) {
			t.Run(fmt.Sprintf("%q", argv), func(t *testing.T) {
				err := checkArgs(argv)
				if err == nil {
					t.Fatalf("allowed; want it refused as --%s", c.flag)
				}
				msg := err.Error()
				for _, want := range []string{"is not allowed", "only the call's cluster parameter chooses the cluster"} {
					if !strings.Contains(msg, want) {
						t.Errorf("message %q does not say %q", msg, want)
					}
				}
				if !strings.Contains(msg, strconv.Quote(c.arg)) {
					t.Errorf("message %q does not name the argument %q", msg, c.arg)
				}
				if !namesFlag(msg, c.flag) {
					t.Errorf("message %q does not name --%s", msg, c.flag)
				}
			})
		}
	}
}

// allowedArgs must still reach plugins. The names cluster flags start with
// but that are not a prefix of one (--server-side, --user-agent,
// --context-free) pass: argparse resolves an abbreviation only when the
// argument is a prefix of the option, never the other way round.
var allowedArgs = []string{
	"pods", "-n", "default", "--namespace=x", "--namespace", "kube-system", "-o", "json", "--output=json", "-o=json",
	"-owide", "-oyaml",
	"--server-side", "--server-side=true", "--user-agent=x", "--context-free", "--contexts", "--tokens", "--as-group-x",
	"--clusters", "--username-file", "--passwords", "--kubeconfig-dir", "--kuberc=x", "--tls-server-name=x",
	"--all-namespaces", "--all", "--container=x", "--continue", "--patch", "--cascade", "--chunk-size=5",
	"--no-insecure-skip-tls-verify", "--v=5", "--help", "---kubeconfig",
	"-5", "-1.5", "-1e3", "-0.5e-3", "--", "-", "", "-A", "-w", "-q", "-it", "-c", "container", "-l", "app=x",
	"--selector=app=x", "-q=true", "--asGroupX", "--serverSide", "--noKubeconfig", "-v5", "-o=custom-columns=NAME:.metadata.name", "-lapp=nginx",
	"-S", "-AS", "-KUBECONFIG", "-Token", "-=", "-q=s", "-o=jsonpath={.items[*].status}",
	"s", "-kubeconfi", "-kubeconfigx", "-tokenx", "-context2",
	"app in (a, b)", "a b; rm -rf /", "du -sh /data", "curl -s --user a:b https://x", " -\rs0", "$(id)", "line1\nline2", "héllo wörld", "kubeconfig", "--namespace=--kubeconfig",
	"https://kubernetes.default.svc", "--filename=-",
}

func TestCheckArgsAllows(t *testing.T) {
	for _, arg := range allowedArgs {
		if err := checkArgs([]string{arg}); err != nil {
			t.Errorf("%q refused: %v", arg, err)
		}
	}
	if err := checkArgs(allowedArgs[:3]); err != nil {
		t.Errorf("%q refused: %v", allowedArgs[:3], err)
	}
	if err := checkArgs(nil); err != nil {
		t.Errorf("no arguments refused: %v", err)
	}
}

// ClusterFlags hands out a copy: front ends cannot change what is refused.
func TestCheckArgsClusterFlagsIsACopy(t *testing.T) {
	got := ClusterFlags()
	if strings.Join(got, ",") != strings.Join(clusterFlags, ",") || len(got) < 16 {
		t.Fatalf("ClusterFlags() = %q", got)
	}
	got[0] = "namespace"
	if err := checkArgs([]string{"--kubeconfig=x"}); err == nil || clusterFlags[0] != "kubeconfig" {
		t.Fatal("changing ClusterFlags()' result changed what checkArgs refuses")
	}
}

// The messages say which parser reads the argument how, and how to write
// it instead.
func TestCheckArgsMessages(t *testing.T) {
	for _, tt := range []struct {
		argv []string
		want []string
	}{
		{[]string{"--kubeconfig=/etc/x"}, []string{`argument 1 "--kubeconfig=/etc/x"`, "it is kubectl's --kubeconfig"}},
		{[]string{"pods", "--client_key", "k"}, []string{`argument 2 "--client_key"`, "read as kubectl's --client-key", "kubectl reads _ as -"}},
		{[]string{"--Token=x"}, []string{"read as kubectl's --token", "ignore case"}},
		{[]string{"--insecureSkipTlsVerify"}, []string{"read as kubectl's --insecure-skip-tls-verify", "yargs reads insecureSkipTlsVerify as insecure-skip-tls-verify"}},
		{[]string{"--as"}, []string{"it is kubectl's --as, and could be read as --as-group, --as-uid or --as-user-extra"}},
		{[]string{"--kubec=x"}, []string{"could be read as --kubeconfig", "argparse", "full name"}},
		{[]string{"--c"}, []string{"--cluster, --context, --certificate-authority, --client-certificate or --client-key"}},
		{[]string{"-kubeconfig", "x"}, []string{"Go's flag package reads it as kubectl's --kubeconfig"}},
		{[]string{"-s", "https://evil"}, []string{"-s is kubectl's --server"}},
		{[]string{"-shttps://evil"}, []string{"-s is kubectl's --server"}},
		{[]string{"-ojson"}, []string{`"-ojson"`, `if -o takes a value, pass it as two arguments, "-o" and "json"`, "long flag"}},
		{[]string{"-As"}, []string{`group of short flags "-As"`, "boolean shorthands"}},
		{[]string{"-o-s"}, []string{"use the plugin's long flags"}},
		{[]string{"--", "-nkube-system"}, []string{`argument 2 "-nkube-system"`, `"-n" and "kube-system"`}},
		{[]string{"a\x00b"}, []string{"argument 1 contains a NUL byte"}},
	} {
		err := checkArgs(tt.argv)
		if err == nil {
			t.Errorf("%q allowed", tt.argv)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: message %q does not say %q", tt.argv, err, w)
			}
		}
	}
}

// FuzzCheckArgsAgainstParsers parses every argv independently with the
// parsers plugins use and requires checkArgs to refuse every argv in which
// one of them finds a cluster flag. The input is the argv joined with NUL
// bytes (which no argument can hold).
func FuzzCheckArgsAgainstParsers(f *testing.F) {
	for _, c := range clusterFlagSpellings() {
		for _, argv := range argvsFor(c.arg) {
			f.Add(strings.Join(argv, "\x00"))
		}
	}
	for _, arg := range allowedArgs {
		f.Add(arg)
	}
	f.Add(strings.Join(allowedArgs, "\x00"))
	f.Fuzz(func(t *testing.T, joined string) {
		argv := strings.Split(joined, "\x00")
		if len(argv) > 12 {
			argv = argv[:12]
		}
		err := checkArgs(argv)
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, "is not allowed") || !strings.Contains(msg, "only the call's cluster parameter chooses the cluster") {
				t.Fatalf("%q: refusal %q does not say it is not allowed and why", argv, msg)
			}
			return
		}
		// Subcommands parse what follows them, and plugins hand what
		// follows "--" to kubectl: parse every suffix.
		for i := range argv {
			if got := parsedClusterFlags(argv[i:]); len(got) > 0 {
				t.Fatalf("checkArgs allowed %q, but parsing %q sets %v", argv, argv[i:], got)
			}
		}
		for _, a := range argv {
			if got, ok := abbreviationOf(a); ok {
				t.Fatalf("checkArgs allowed %q, but argparse reads %q as --%s", argv, a, got)
			}
			if got, ok := lowerCased(a); ok {
				t.Fatalf("checkArgs allowed %q, but click with a lower-casing normaliser reads %q as --%s", argv, a, got)
			}
			if got, ok := yargsReads(a); ok {
				t.Fatalf("checkArgs allowed %q, but yargs reads %q as --%s", argv, a, got)
			}
		}
	})
}

// parsedClusterFlags parses argv with Go's flag package and with pflag
// (kubectl's "_" normaliser; a plugin's few flags; every shorthand a
// boolean; unknown flags ignored) and returns the cluster flags any of them
// set.
func parsedClusterFlags(argv []string) []string {
	var set []string
	// Go's flag package, with every "-"/"_" spelling of each name defined.
	gf := flag.NewFlagSet("plugin", flag.ContinueOnError)
	gf.SetOutput(io.Discard)
	gf.Usage = func() {}
	for _, f := range clusterFlags {
		for _, name := range separatorSpellings(f) {
			if f == "insecure-skip-tls-verify" {
				gf.Bool(name, false, "")
			} else {
				gf.String(name, "", "")
			}
		}
	}
	gf.String("s", "", "a plugin's own short --server")
	for _, b := range []string{"A", "q", "w", "all-namespaces"} {
		gf.Bool(b, false, "")
	}
	for _, s := range []string{"n", "o", "namespace", "output"} {
		gf.String(s, "", "")
	}
	_ = gf.Parse(argv)
	gf.Visit(func(fl *flag.Flag) {
		name := strings.ReplaceAll(fl.Name, "_", "-")
		if name == "s" {
			name = "server"
		}
		if isClusterFlag(name) {
			set = append(set, "flag:"+fl.Name)
		}
	})

	for _, mode := range []string{"plugin", "all-bool", "ignore-unknown"} {
		pf := pflag.NewFlagSet("plugin", pflag.ContinueOnError)
		pf.SetOutput(io.Discard)
		pf.Usage = func() {}
		pf.SetNormalizeFunc(wordSepNormalize)
		for _, f := range clusterFlags {
			switch f {
			case "insecure-skip-tls-verify":
				pf.Bool(f, false, "")
			case "server":
				pf.StringP(f, "s", "", "")
			default:
				pf.String(f, "", "")
			}
		}
		switch mode {
		case "all-bool": // a plugin whose every other shorthand is a boolean
			for c := byte('!'); c <= '~'; c++ {
				if c != 's' {
					pf.BoolP(fmt.Sprintf("bool-%02x", c), string(c), false, "")
				}
			}
		default:
			pf.BoolP("all-namespaces", "A", false, "")
			pf.BoolP("quiet", "q", false, "")
			pf.BoolP("watch", "w", false, "")
			pf.StringP("namespace", "n", "", "")
			pf.StringP("output", "o", "", "")
			if mode == "ignore-unknown" {
				pf.ParseErrorsAllowlist.UnknownFlagsHandling = pflag.IgnoreUnknownFlag
			}
		}
		_ = pf.Parse(argv)
		for _, f := range clusterFlags {
			if pf.Changed(f) {
				set = append(set, "pflag/"+mode+":"+f)
			}
		}
	}
	return set
}

// wordSepNormalize is kubectl's cliflag.WordSepNormalizeFunc.
func wordSepNormalize(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	return pflag.NormalizedName(strings.ReplaceAll(name, "_", "-"))
}

// separatorSpellings returns every spelling of name with each "-" kept or
// written as "_".
func separatorSpellings(name string) []string {
	out := []string{""}
	for _, r := range name {
		var next []string
		for _, p := range out {
			next = append(next, p+string(r))
			if r == '-' {
				next = append(next, p+"_")
			}
		}
		out = next
	}
	return out
}

func isClusterFlag(name string) bool {
	for _, f := range clusterFlags {
		if f == name {
			return true
		}
	}
	return false
}

// abbreviationOf is argparse's reading of a long option (allow_abbrev):
// "--P" or "--P=x" resolves to every option that starts with P, so to a
// cluster flag when P is a prefix of one. "--" alone ends the options.
func abbreviationOf(arg string) (string, bool) {
	if len(arg) < 3 || arg[:2] != "--" {
		return "", false
	}
	p := arg[2:]
	if i := strings.Index(p, "="); i >= 0 {
		p = p[:i]
	}
	for _, f := range clusterFlags {
		if len(p) <= len(f) && f[:len(p)] == p {
			return f, true
		}
	}
	return "", false
}

// lowerCased is click with token_normalize_func=str.lower.
func lowerCased(arg string) (string, bool) {
	if len(arg) < 3 || arg[:2] != "--" {
		return "", false
	}
	name, _, _ := strings.Cut(arg[2:], "=")
	name = strings.ToLower(name)
	return name, isClusterFlag(name)
}

// yargsReads is yargs' camel-case expansion: --asGroup sets as-group.
func yargsReads(arg string) (string, bool) {
	if len(arg) < 3 || arg[:2] != "--" {
		return "", false
	}
	name, _, _ := strings.Cut(arg[2:], "=")
	for _, f := range clusterFlags {
		if name == yargsCamel(f) {
			return f, true
		}
	}
	return "", false
}

// yargsCamel is yargs-parser's camelCase: as-group is asGroup.
func yargsCamel(flag string) string {
	var b strings.Builder
	up := false
	for _, r := range flag {
		switch {
		case r == '-':
			up = true
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
