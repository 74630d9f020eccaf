package container

import (
	"context"
	"sync"
	"time"
)

// maxWarmPlugins is how many plugins keep warm containers at once; the
// least recently called gives its pool up first.
const maxWarmPlugins = 32

// poolKey is what a created container is made for: one plugin file, with
// or without a cluster (a network namespace and kubeconfig of its own).
type poolKey struct {
	plugin  string
	cluster bool
}

// warmPool keeps containers created ahead of demand, up to size per
// plugin, so that a call only starts one. Each serves exactly one call
// and is removed after it; the pool refills in the background after each
// call of its plugin, so the first call of a plugin, and a call that
// finds its pool empty, create their own container (the cold path). A nil
// pool keeps nothing.
type warmPool struct {
	b    *Backend
	size int

	mu      sync.Mutex
	ready   map[poolKey][]*created
	filling map[poolKey]int
	used    map[poolKey]time.Time // last call, for eviction
	closed  bool
	fills   sync.WaitGroup
}

func newWarmPool(b *Backend, size int) *warmPool {
	if size <= 0 {
		return nil
	}
	return &warmPool{b: b, size: size, ready: map[poolKey][]*created{}, filling: map[poolKey]int{}, used: map[poolKey]time.Time{}}
}

// wanted records that key is called and its pool should be kept full.
func (p *warmPool) wanted(key poolKey) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.used[key] = time.Now()
	p.mu.Unlock()
}

// take returns a created container for key, or nil when none is ready.
// One whose plugin file has changed since is removed, not used: it binds
// the file as it was.
func (p *warmPool) take(key poolKey) *created {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	list := p.ready[key]
	if len(list) == 0 {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	now, err := identify(key.plugin)
	p.mu.Lock()
	list = p.ready[key]
	var stale []*created
	var c *created
	for len(list) > 0 && c == nil {
		c, list = list[0], list[1:]
		if err != nil || c.plugin != now {
			stale, c = append(stale, c), nil
		}
	}
	p.ready[key] = list
	p.mu.Unlock()
	for _, s := range stale {
		p.discardLater(s)
	}
	return c
}

// refill creates, in the background, what key's pool lacks.
func (p *warmPool) refill(key poolKey) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if _, called := p.used[key]; !called || p.closed {
		p.mu.Unlock()
		return
	}
	need := p.size - len(p.ready[key]) - p.filling[key]
	p.filling[key] += max(need, 0)
	evicted := p.evictLocked()
	p.mu.Unlock()
	for _, c := range evicted {
		p.discardLater(c)
	}
	for range need {
		p.fills.Add(1)
		go func() {
			defer p.fills.Done()
			c, err := p.b.create(context.Background(), key)
			p.mu.Lock()
			p.filling[key]--
			_, wanted := p.used[key]
			keep := err == nil && wanted && !p.closed
			if keep {
				p.ready[key] = append(p.ready[key], c)
			}
			p.mu.Unlock()
			if err != nil {
				p.b.log.Debug("warm container not made; calls take the cold path", "plugin", key.plugin, "error", err)
			} else if !keep {
				p.b.discard(c)
			}
		}()
	}
}

// evictLocked forgets the least recently called plugins beyond
// maxWarmPlugins and returns their containers.
func (p *warmPool) evictLocked() []*created {
	var out []*created
	for len(p.used) > maxWarmPlugins {
		var oldest poolKey
		var at time.Time
		for k, t := range p.used {
			if at.IsZero() || t.Before(at) {
				oldest, at = k, t
			}
		}
		out = append(out, p.ready[oldest]...)
		delete(p.ready, oldest)
		delete(p.used, oldest)
	}
	return out
}

// settle waits for the fills in flight.
func (p *warmPool) settle() {
	if p != nil {
		p.fills.Wait()
	}
}

// close stops refilling and removes every warm container.
func (p *warmPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.fills.Wait()
	p.mu.Lock()
	var all []*created
	for k, list := range p.ready {
		all = append(all, list...)
		delete(p.ready, k)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.b.discard(c)
		}()
	}
	wg.Wait()
}

// discardLater discards c in the background.
func (p *warmPool) discardLater(c *created) {
	p.b.removals.Add(1)
	go func() {
		defer p.b.removals.Done()
		p.b.discard(c)
	}()
}

// count is how many warm containers are ready (Backend.Warm).
func (p *warmPool) count() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, list := range p.ready {
		n += len(list)
	}
	return n
}
