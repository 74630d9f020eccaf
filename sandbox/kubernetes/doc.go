// Package kubernetes runs each plugin call as its own short-lived Pod of a
// sandbox cluster.
//
// The Pod is built from Profile, a list of small named options in the
// style of containerd's oci.SpecOpts, which `profile show` prints. Its
// first program, kmcp-pod from the sandbox image, waits; the call execs it
// again with the plugin's argv, environment and bytes on stdin, and it
// runs the plugin only if the bytes have the sha256 discovery verified.
// The plugin reaches its cluster only through the call's API gateway,
// served by this process on the pod network and opened by the call's own
// capability, from the pod's address alone. The Pod, and the
// NetworkPolicy that lets it reach the gateway and nothing else where the
// cluster enforces NetworkPolicy, are deleted after the call on every
// path; a server removes at start what a crashed one left, by label.
package kubernetes
