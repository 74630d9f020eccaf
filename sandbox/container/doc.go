// Package container runs each plugin call in a fresh, short-lived containerd
// container: read-only, unprivileged, and with only its cluster in reach.
package container
