package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSlotsServeWaitersInOrder(t *testing.T) {
	s := newSlots(1, 10, nil)
	s.acquire(context.Background())
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acquire(context.Background())
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			s.release()
		}()
		for s.waiting.Load() != int64(i+1) { // this one queued: the order is known
			time.Sleep(time.Millisecond)
		}
	}
	// One waiter gives up: the others keep their places.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with an ended context: %v", err)
	}
	s.release()
	wg.Wait()
	if fmt.Sprint(order) != "[0 1 2 3 4]" {
		t.Errorf("served in order %v", order)
	}
}

func TestSlotsRefuseAtOnceWhenTheQueueIsFull(t *testing.T) {
	s := newSlots(1, 1, nil)
	s.acquire(context.Background())
	go s.acquire(context.Background()) // the one place in the queue
	for s.waiting.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	err := s.acquire(context.Background())
	if !errors.Is(err, errQueueFull) || !strings.Contains(err.Error(), "plugins.max_queue") {
		t.Fatalf("a call past max_queue: %v", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("the refusal took %s; it must come at once", waited)
	}
}

// Past max_queue a call is refused with its cause; a call cancelled while
// it waits is reported as cancelled, and neither ran.
func TestExecuteBoundsTheQueueAndReportsCancelledWaits(t *testing.T) {
	rt, _ := newRuntime(t, "max_concurrent = 1\nmax_queue = 1")
	running := make(chan *Result, 1)
	go func() {
		res, _ := rt.Execute(context.Background(), Call{Plugin: "nap", Args: []string{"3"}})
		running <- res
	}()
	for rt.slots.sem.TryAcquire(1) { // wait until the sleeper holds the slot
		rt.slots.release()
		time.Sleep(5 * time.Millisecond)
	}
	waitCtx, cancelWait := context.WithCancel(context.Background())
	waited := make(chan *Result, 1)
	go func() {
		res, err := rt.Execute(waitCtx, Call{Plugin: "echo", Args: []string{"waited"}})
		if err != nil {
			t.Errorf("the waiting call: %v", err)
		}
		waited <- res
	}()
	for rt.slots.waiting.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	_, err := rt.Execute(context.Background(), Call{Plugin: "echo"})
	if !errors.Is(err, ErrRefused) || !errors.Is(err, errQueueFull) || !strings.Contains(err.Error(), "max_queue") {
		t.Errorf("a call past max_queue: %v", err)
	}
	cancelWait()
	res := <-waited
	if res == nil || res.Status != StatusCancelled || res.Output != "" || !strings.Contains(res.Message, "did not run") {
		t.Errorf("the call cancelled while waiting: %+v", res)
	}
	if res := <-running; res == nil || res.Status != StatusOK {
		t.Errorf("the running call: %+v", res)
	}
	if info, _ := rt.Plugin("echo"); info.ExecutionCount != 0 {
		t.Errorf("calls that never ran were counted as runs: %d", info.ExecutionCount)
	}
}
