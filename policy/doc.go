// Package policy decides, on data alone, which plugin may run on which
// cluster and what it may do there.
package policy
