package runtime

import (
	"context"
	"sync"
)

// limiter lets at most n calls run at once; the others wait in the order
// they came and give up when their context ends.
type limiter struct {
	mu      sync.Mutex
	free    int
	waiters []chan struct{}
}

func newLimiter(n int) *limiter { return &limiter{free: n} }

func (l *limiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	if l.free > 0 && len(l.waiters) == 0 {
		l.free--
		l.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	l.waiters = append(l.waiters, ready)
	l.mu.Unlock()

	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for i, w := range l.waiters {
			if w == ready {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				l.mu.Unlock()
				return ctx.Err()
			}
		}
		l.mu.Unlock()
		// The slot was handed over as ctx ended: pass it on.
		l.release()
		return ctx.Err()
	}
}

func (l *limiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiters) > 0 {
		next := l.waiters[0]
		l.waiters = l.waiters[1:]
		close(next)
		return
	}
	l.free++
}
