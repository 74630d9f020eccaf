package runtime

import (
	"fmt"
	"strings"
	"unicode"
)

// clusterFlags are kubectl's flags that choose another cluster, identity or
// credential. A plugin's cluster is chosen by the call's cluster parameter
// only, so these never reach a plugin, in any spelling.
var clusterFlags = []string{
	"kubeconfig", "server", "token", "as", "as-group", "as-uid", "user", "cluster", "context",
	"certificate-authority", "client-certificate", "client-key", "insecure-skip-tls-verify",
	"username", "password",
}

// ClusterFlags returns the long flags (without dashes) that no call may
// pass, so front ends can leave them out of what they offer.
func ClusterFlags() []string { return append([]string(nil), clusterFlags...) }

// checkArgs refuses arguments that would redirect cluster access or that no
// plugin can receive.
func checkArgs(args []string) error {
	for i, arg := range args {
		if strings.IndexByte(arg, 0) >= 0 {
			return fmt.Errorf("argument %d contains a NUL byte, which no program can receive", i+1)
		}
		for _, name := range clusterFlags {
			if arg == "--"+name || strings.HasPrefix(arg, "--"+name+"=") {
				return fmt.Errorf("argument %q is not allowed: it would choose the cluster or credentials, which only the call's cluster parameter does", arg)
			}
		}
		// -s is kubectl's short --server: -s URL, -s=URL and -sURL alike.
		if strings.HasPrefix(arg, "-s") && !strings.HasPrefix(arg, "--") {
			return fmt.Errorf("argument %q is not allowed: -s is kubectl's --server; if the plugin means something else by -s, use its long flag", arg)
		}
	}
	return nil
}

// checkPluginName refuses names that cannot be a plugin's, before any lookup.
func checkPluginName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("plugin name is empty")
	case strings.ContainsAny(name, "/\\") || strings.Contains(name, ".."):
		return fmt.Errorf("plugin name %q may not contain a path", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("plugin name %q contains a NUL byte", name)
	}
	for _, r := range name {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return fmt.Errorf("plugin name %q has characters outside printable ASCII", name)
		}
	}
	return nil
}
