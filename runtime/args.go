package runtime

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// clusterFlags are kubectl's flags that choose another cluster, identity or
// credential. A plugin's cluster is chosen by the call's cluster parameter
// only, so these never reach a plugin, in any spelling.
var clusterFlags = []string{
	"kubeconfig", "server", "token", "as", "as-group", "as-uid", "user", "cluster", "context",
	"certificate-authority", "client-certificate", "client-key", "insecure-skip-tls-verify",
	"username", "password",
	"as-user-extra", // kubectl 1.35 and later: impersonation extras
}

// CheckFlag says why no call may pass a plugin's own flag as a tool passes
// it (--long=value, or -x value for a flag with only a short name), or
// returns nil. Front ends leave such flags out of what they offer, so a
// tool never offers a parameter its every use would be refused for.
func CheckFlag(long, short string) error {
	if long != "" {
		return checkArgs([]string{"--" + long + "=value"})
	}
	return checkArgs([]string{"-" + short, "value"})
}

// ClusterFlags returns the long flags (without dashes) that no call may
// pass, so front ends can leave them out of what they offer.
func ClusterFlags() []string { return append([]string(nil), clusterFlags...) }

// checkArgs refuses arguments that would redirect cluster access or that no
// plugin can receive.
//
// Plugins parse their argv with many libraries and often hand all of it,
// including whatever follows a "--", on to kubectl. So every argument, "--"
// or not, is refused that a common parser could read as one of
// clusterFlags:
//
//   - "--NAME" or "--NAME=VALUE" where NAME is a cluster flag, or any prefix
//     of one (Python's argparse and GNU getopt_long resolve an unambiguous
//     prefix of a plugin's long option, and which options a plugin has we
//     do not know), after reading "_" as "-" (kubectl's normaliser) and
//     ignoring case (click's common lower-casing normaliser); or NAME is a
//     cluster flag without its dashes (Node's yargs reads --asGroup as
//     --as-group). "--=VALUE" is refused too: argparse reads it as a prefix
//     of every long option;
//   - "-NAME" or "-NAME=VALUE" where NAME, "_" read as "-", is a cluster
//     flag: Go's flag package reads it like "--NAME";
//   - a single-dash group in which s could be a flag letter. pflag and
//     getopt read "-abc" as -a -b -c for as long as the letters take no
//     value, so "-s", "-sURL", "-s=URL", "-qs" and "-As" can all be
//     kubectl's -s (--server). Which of a plugin's shorthands take a value
//     we do not know, so an s anywhere before the group's "=" counts:
//     "-ojson" is refused, "-o" "json" is not. A negative number ("-5",
//     "-1.5e3") never holds an s, so those pass.
//
// An argument is checked whole. A plugin that splits its arguments at
// spaces (an unquoted $* in a shell script) could find a flag inside one,
// but refusing such words would also refuse "du -sh /data" and
// "curl --user a:b ..." handed to exec-style plugins; behind this check the
// gateway drops whatever credential and impersonation headers kubectl sends.
func checkArgs(args []string) error {
	for i, arg := range args {
		if strings.IndexByte(arg, 0) >= 0 {
			return fmt.Errorf("argument %d contains a NUL byte, which no program can receive", i+1)
		}
		r := refuseArg(arg)
		if r == nil {
			continue
		}
		msg := fmt.Sprintf("argument %d %q is not allowed: ", i+1, arg)
		msg += r.why + ", and only the call's cluster parameter chooses the cluster or credentials"
		if r.hint != "" {
			msg += "; " + r.hint
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// refusal says why one argument is refused and how to write it instead.
type refusal struct{ why, hint string }

// refuseArg returns why arg could be read as a cluster flag, or nil.
func refuseArg(arg string) *refusal {
	if len(arg) < 2 || arg[0] != '-' || arg == "--" {
		return nil // positional, "-" (stdin) or the "--" terminator
	}
	if arg[1] == '-' {
		return refuseLong(arg)
	}
	return refuseShort(arg)
}

// refuseLong handles "--NAME" and "--NAME=VALUE".
func refuseLong(arg string) *refusal {
	name, _, hasValue := strings.Cut(arg[2:], "=")
	dashed := strings.ReplaceAll(name, "_", "-") // kubectl's normaliser
	norm := strings.ToLower(dashed)              // click's common lower-casing one
	if norm == "" && hasValue {
		return &refusal{why: "Python's argparse reads \"--=\" as an abbreviation of every long flag, so it could be read as " + orList(clusterFlags)}
	}
	camel := !strings.ContainsAny(name, "-_") // Node's yargs: asGroup is as-group
	var exact string
	var prefixOf []string
	for _, f := range clusterFlags {
		switch {
		case f == norm || (camel && exact == "" && strings.ReplaceAll(f, "-", "") == norm):
			exact = f
		case strings.HasPrefix(f, norm):
			prefixOf = append(prefixOf, f)
		}
	}
	const abbrev = "Python's argparse and getopt_long accept any unambiguous prefix of a long flag"
	switch {
	case exact != "":
		why := "it is kubectl's --" + exact
		if name != exact {
			var because []string
			if dashed != name {
				because = append(because, "kubectl reads _ as -")
			}
			if norm != exact {
				because = append(because, "Node's yargs reads "+camelCase(exact)+" as "+exact)
			} else if norm != dashed {
				because = append(because, "some plugins ignore case")
			}
			why = "it is read as kubectl's --" + exact + " (" + strings.Join(because, ", and ") + ")"
		}
		if len(prefixOf) > 0 {
			why += ", and could be read as " + orList(prefixOf) + " (" + abbrev + ")"
		}
		return &refusal{why: why + ", which would choose the cluster or credentials"}
	case len(prefixOf) > 0:
		return &refusal{
			why:  "it could be read as " + orList(prefixOf) + " (" + abbrev + "), which would choose the cluster or credentials",
			hint: "if the plugin has a longer flag that starts this way, write that flag's full name",
		}
	}
	return nil
}

// camelCase turns as-group into asGroup.
func camelCase(flag string) string {
	parts := strings.Split(flag, "-")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// refuseShort handles single-dash arguments: Go flag's "-NAME" and
// pflag/getopt groups of short flags.
func refuseShort(arg string) *refusal {
	name, _, _ := strings.Cut(arg[1:], "=")
	norm := strings.ReplaceAll(name, "_", "-")
	for _, f := range clusterFlags {
		if f == norm {
			how := "Go's flag package reads it as kubectl's --" + f + " (it accepts one dash as well as two"
			if name != f {
				how += ", and kubectl reads _ as -"
			}
			return &refusal{why: how + "), which would choose the cluster or credentials"}
		}
	}
	// The flag letters of a group end at an "=" after its first letter
	// (pflag's "-o=json"); the first letter itself may be any byte.
	group := arg[1:]
	if i := strings.IndexByte(group[1:], '='); i >= 0 {
		group = group[:i+1]
	}
	at := strings.IndexByte(group, 's')
	if at < 0 {
		return nil
	}
	if at == 0 {
		return &refusal{
			why:  "-s is kubectl's --server (pflag and getopt read -sVALUE and -s=VALUE as -s VALUE), which would choose the cluster",
			hint: "if the plugin's own -s means something else, use its long flag",
		}
	}
	r := &refusal{
		why: fmt.Sprintf("-s is kubectl's --server, and in the group of short flags %q the letters before s may be boolean shorthands, so s could be read as -s", "-"+group),
	}
	_, size := utf8.DecodeRuneInString(arg[1:])
	letter, rest := arg[1:1+size], arg[1+size:]
	if rest != "" && refuseArg(rest) == nil {
		r.hint = fmt.Sprintf("if -%s takes a value, pass it as two arguments, %q and %q, or use the plugin's long flag (as in \"--output=json\" for \"-ojson\"); give boolean shorthands one per argument", letter, "-"+letter, rest)
	} else {
		r.hint = "use the plugin's long flags (as in \"--output=json\" for \"-ojson\"), or give each short flag as its own argument"
	}
	return r
}

// orList renders flags as "--a", "--a or --b", "--a, --b or --c".
func orList(flags []string) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = "--" + f
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
