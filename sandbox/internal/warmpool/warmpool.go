// Package warmpool keeps sandboxes made ahead of their calls, a few per
// plugin, for the backends that can make one before its call is known.
package warmpool

import (
	"context"
	"sync"
	"time"
)

// MaxKeys is how many plugins keep warm sandboxes at once; the least
// recently called gives its pool up first.
const MaxKeys = 32

// Pool keeps up to Size sandboxes per key (a plugin file, and whatever
// else a sandbox is made for), so that a call only starts one. Each serves
// exactly one call and is discarded after it; a key's pool refills in the
// background after each of its calls, so the first call of a key, and a
// call that finds its pool empty, make their own (the cold path). A nil
// Pool keeps nothing.
type Pool[K comparable, V any] struct {
	size int
	// make makes a sandbox for k; discard removes one that will not be
	// used; fresh says whether one still fits its key (false: discarded,
	// not used).
	make    func(context.Context, K) (V, error)
	discard func(V)
	fresh   func(K, V) bool
	failed  func(K, error)

	mu       sync.Mutex
	ready    map[K][]V
	filling  map[K]int
	used     map[K]time.Time // last call, for eviction
	closed   bool
	fills    sync.WaitGroup
	removals sync.WaitGroup
}

// Config is what a Pool does with its sandboxes.
type Config[K comparable, V any] struct {
	Size    int
	Make    func(context.Context, K) (V, error)
	Discard func(V)
	// Fresh, when set, is asked before a sandbox is handed out.
	Fresh func(K, V) bool
	// Failed, when set, hears of a sandbox that could not be made.
	Failed func(K, error)
}

// New returns a pool, or nil for Size 0.
func New[K comparable, V any](cfg Config[K, V]) *Pool[K, V] {
	if cfg.Size <= 0 {
		return nil
	}
	return &Pool[K, V]{size: cfg.Size, make: cfg.Make, discard: cfg.Discard, fresh: cfg.Fresh, failed: cfg.Failed,
		ready: map[K][]V{}, filling: map[K]int{}, used: map[K]time.Time{}}
}

// Wanted records that k is called and its pool should be kept full.
func (p *Pool[K, V]) Wanted(k K) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.used[k] = time.Now()
	p.mu.Unlock()
}

// Take returns a sandbox made for k, if one is ready.
func (p *Pool[K, V]) Take(k K) (v V, ok bool) {
	if p == nil {
		return v, false
	}
	for {
		p.mu.Lock()
		list := p.ready[k]
		if len(list) == 0 {
			p.mu.Unlock()
			return v, false
		}
		v, p.ready[k] = list[0], list[1:]
		p.mu.Unlock()
		if p.fresh == nil || p.fresh(k, v) {
			return v, true
		}
		p.DiscardLater(v)
	}
}

// Refill makes, in the background, what k's pool lacks.
func (p *Pool[K, V]) Refill(k K) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if _, called := p.used[k]; !called || p.closed {
		p.mu.Unlock()
		return
	}
	need := p.size - len(p.ready[k]) - p.filling[k]
	p.filling[k] += max(need, 0)
	evicted := p.evictLocked()
	p.mu.Unlock()
	for _, v := range evicted {
		p.DiscardLater(v)
	}
	for range need {
		p.fills.Add(1)
		go func() {
			defer p.fills.Done()
			v, err := p.make(context.Background(), k)
			p.mu.Lock()
			p.filling[k]--
			_, wanted := p.used[k]
			keep := err == nil && wanted && !p.closed
			if keep {
				p.ready[k] = append(p.ready[k], v)
			}
			p.mu.Unlock()
			if err != nil {
				if p.failed != nil {
					p.failed(k, err)
				}
			} else if !keep {
				p.discard(v)
			}
		}()
	}
}

// evictLocked forgets the least recently called keys beyond MaxKeys and
// returns their sandboxes.
func (p *Pool[K, V]) evictLocked() []V {
	var out []V
	for len(p.used) > MaxKeys {
		var oldest K
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

// Settle waits for the fills in flight and the discards still running.
func (p *Pool[K, V]) Settle() {
	if p != nil {
		p.fills.Wait()
		p.removals.Wait()
	}
}

// Close stops refilling and discards every warm sandbox, and waits for
// the discards still running.
func (p *Pool[K, V]) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.fills.Wait()
	p.mu.Lock()
	var all []V
	for k, list := range p.ready {
		all = append(all, list...)
		delete(p.ready, k)
	}
	p.mu.Unlock()
	for _, v := range all {
		p.DiscardLater(v)
	}
	p.removals.Wait()
}

// DiscardLater discards v in the background; Close waits for it.
func (p *Pool[K, V]) DiscardLater(v V) {
	p.removals.Add(1)
	go func() {
		defer p.removals.Done()
		p.discard(v)
	}()
}

// Count is how many warm sandboxes are ready.
func (p *Pool[K, V]) Count() int {
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
