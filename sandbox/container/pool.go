package container

import (
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/internal/warmpool"
)

// poolKey is what a created container is made for: one plugin file, with
// or without a cluster (a network namespace and kubeconfig of its own).
type poolKey struct {
	plugin  string
	cluster bool
}

// warmPool keeps containers created ahead of demand, up to size per
// plugin, so that a call only starts one (see warmpool.Pool). One whose
// plugin file has changed since is removed, not used: it binds the file
// as it was. A nil pool keeps nothing.
type warmPool = warmpool.Pool[poolKey, *created]

func newWarmPool(b *Backend, size int) *warmPool {
	return warmpool.New(warmpool.Config[poolKey, *created]{
		Size:    size,
		Make:    b.create,
		Discard: b.discard,
		Fresh: func(key poolKey, c *created) bool {
			now, err := identify(key.plugin)
			return err == nil && c.plugin == now
		},
		Failed: func(key poolKey, err error) {
			b.log.Debug("warm container not made; calls take the cold path", "plugin", key.plugin, "error", err)
		},
	})
}
