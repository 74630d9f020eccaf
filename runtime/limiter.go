package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// slots lets at most n calls run at once and at most queue more wait, in
// the order they came. x/sync's semaphore is FIFO (TryAcquire fails while
// others wait) and gives up when a waiter's ctx ends; it does not bound its
// queue, which the waiting count does.
type slots struct {
	sem     *semaphore.Weighted
	n       int
	queue   int64
	waiting atomic.Int64
	// onWait is told of every call that starts or stops waiting.
	onWait func(delta int)
}

func newSlots(n, queue int, onWait func(delta int)) *slots {
	if onWait == nil {
		onWait = func(int) {}
	}
	return &slots{sem: semaphore.NewWeighted(int64(n)), n: n, queue: int64(queue), onWait: onWait}
}

// errQueueFull refuses a call that would wait behind max_queue others.
var errQueueFull = errors.New("queue full")

// acquire takes a slot, waiting in line when all are busy. It fails at
// once, wrapping errQueueFull, when the line is full, and with ctx's error
// when ctx ends first.
func (s *slots) acquire(ctx context.Context) error {
	if s.sem.TryAcquire(1) {
		return nil
	}
	if s.waiting.Add(1) > s.queue {
		s.waiting.Add(-1)
		return fmt.Errorf("%w: all %d call slots (plugins.max_concurrent) are busy and %d calls are already waiting (plugins.max_queue); try again later",
			errQueueFull, s.n, s.queue)
	}
	s.onWait(1)
	defer func() { s.waiting.Add(-1); s.onWait(-1) }()
	return s.sem.Acquire(ctx, 1)
}

func (s *slots) release() { s.sem.Release(1) }
