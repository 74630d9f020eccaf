// Command kubectl-pod_list is an example kubectl plugin (`kubectl pod-list`)
// for the WebAssembly sandbox of kubernetes-mcp-server: it lists the pods of
// a namespace through client-go, whose requests the sandbox's host function
// carries to the call's API gateway (package wasmguest). The plugin holds no
// credential and opens no socket.
//
// Build it as kubectl-pod_list.wasm and put it in a plugin folder:
//
//	GOOS=wasip1 GOARCH=wasm go build -o kubectl-pod_list.wasm ./examples/wasm/pod-list
//
// It uses client-go's dynamic client rather than the typed clientset: the
// clientset's package initialisation (the registration of every API group's
// types) costs several times more inside the guest than the whole rest of
// a call. Built for the host it is an ordinary kubectl plugin that reads the
// kubeconfig as kubectl does (wasmguest.RESTConfig does both).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/wasmguest"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the cluster could not be reached or refused the request
	exitUsage = 2 // bad flags
)

// chunk is the page size of a list, as kubectl's.
const chunk = 500

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, wasmguest.RESTConfig, time.Now))
}

// options are the command line's.
type options struct {
	namespace     string
	allNamespaces bool
	selector      string
	output        string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, config func() (*rest.Config, error), now func() time.Time) int {
	var o options
	flags := pflag.NewFlagSet("kubectl pod-list", pflag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVarP(&o.namespace, "namespace", "n", "default", "Namespace whose pods to list")
	flags.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "List the pods of every namespace")
	flags.StringVarP(&o.selector, "selector", "l", "", "Label selector to filter on, for example app=web,tier!=db")
	flags.StringVarP(&o.output, "output", "o", "", "Output format: empty for a table, or name")
	help := flags.BoolP("help", "h", false, "Help for pod-list")
	flags.Usage = func() {}
	if err := flags.Parse(args); err != nil {
		fmt.Fprintf(stderr, "Error: %v\nSee 'kubectl pod-list --help'.\n", err)
		return exitUsage
	}
	if *help {
		usage(stdout, flags)
		return exitOK
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "Error: unexpected argument %q\nSee 'kubectl pod-list --help'.\n", flags.Arg(0))
		return exitUsage
	}
	if o.output != "" && o.output != "name" {
		fmt.Fprintf(stderr, "Error: --output must be empty or name, not %q\n", o.output)
		return exitUsage
	}
	cfg, err := config()
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return exitError
	}
	pods, err := listPods(ctx, cfg, o)
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return exitError
	}
	if err := printPods(stdout, pods, o, now()); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return exitError
	}
	if len(pods) == 0 && o.output == "" {
		if o.allNamespaces {
			fmt.Fprintln(stderr, "No resources found")
		} else {
			fmt.Fprintf(stderr, "No resources found in %s namespace.\n", o.namespace)
		}
	}
	return exitOK
}

func usage(w io.Writer, flags *pflag.FlagSet) {
	fmt.Fprintf(w, `List the pods of a namespace: name, readiness, phase, restarts, node and age.

Usage:
  kubectl pod-list [flags]

Examples:
  kubectl pod-list -n kube-system
  kubectl pod-list -A -l app=web -o name

Flags:
%s`, flags.FlagUsages())
}

// listPods lists the pods o names, page by page.
func listPods(ctx context.Context, cfg *rest.Config, o options) ([]unstructured.Unstructured, error) {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ns := o.namespace
	if o.allNamespaces {
		ns = metav1.NamespaceAll
	}
	var pods []unstructured.Unstructured
	opts := metav1.ListOptions{LabelSelector: o.selector, Limit: chunk}
	for {
		list, err := client.Resource(podsResource).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		pods = append(pods, list.Items...)
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			return pods, nil
		}
	}
}

// printPods writes pods as a table, or as pod/NAME lines for -o name.
func printPods(w io.Writer, pods []unstructured.Unstructured, o options, now time.Time) error {
	if o.output == "name" {
		for _, p := range pods {
			if _, err := fmt.Fprintf(w, "pod/%s\n", p.GetName()); err != nil {
				return err
			}
		}
		return nil
	}
	if len(pods) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	if o.allNamespaces {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tREADY\tPHASE\tRESTARTS\tNODE\tAGE")
	for _, p := range pods {
		r := row(p, now)
		if o.allNamespaces {
			fmt.Fprint(tw, p.GetNamespace()+"\t")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.GetName(), r.ready, r.phase, r.restarts, r.node, r.age)
	}
	return tw.Flush()
}

// podRow is one pod's line of the table.
type podRow struct {
	ready, phase, node, age string
	restarts                int64
}

func row(p unstructured.Unstructured, now time.Time) podRow {
	r := podRow{phase: "Unknown", node: "<none>", age: "<unknown>"}
	if phase, _, _ := unstructured.NestedString(p.Object, "status", "phase"); phase != "" {
		r.phase = phase
	}
	if p.GetDeletionTimestamp() != nil {
		r.phase = "Terminating"
	}
	if node, _, _ := unstructured.NestedString(p.Object, "spec", "nodeName"); node != "" {
		r.node = node
	}
	if created := p.GetCreationTimestamp(); !created.IsZero() {
		r.age = duration.HumanDuration(now.Sub(created.Time))
	}
	containers, _, _ := unstructured.NestedSlice(p.Object, "spec", "containers")
	statuses, _, _ := unstructured.NestedSlice(p.Object, "status", "containerStatuses")
	ready := 0
	for _, s := range statuses {
		s, _ := s.(map[string]any)
		if ok, _, _ := unstructured.NestedBool(s, "ready"); ok {
			ready++
		}
		if n, ok, _ := unstructured.NestedInt64(s, "restartCount"); ok {
			r.restarts += n
		}
	}
	r.ready = strconv.Itoa(ready) + "/" + strconv.Itoa(len(containers))
	return r
}
