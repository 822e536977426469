package ring_test

import (
	"fmt"

	"github.com/klagg/klagg/ring"
)

// A consumer drains two rings, each filled by its own producer, sleeping on one
// shared Waiter while both are empty.
func Example() {
	cfg := ring.DefaultConfig()
	cfg.Size = 64
	w := ring.NewWaiter(cfg)
	rings := []*ring.Ring[int]{ring.New[int](cfg, w), ring.New[int](cfg, w)}
	for i, r := range rings {
		go func() {
			for v := range 1000 {
				s := r.Reserve(1)
				s[0] = i*1_000_000 + v
				r.Publish(1)
			}
			r.Close()
		}()
	}

	ready := func() bool {
		for _, r := range rings {
			if r.Ready() {
				return true
			}
		}
		return false
	}
	sums := make([]int, len(rings))
	for done := 0; done < len(rings); {
		w.Wait(ready, 0)
		done = 0
		for i, r := range rings {
			if r.Done() {
				done++
				continue
			}
			batch := r.Peek()
			for _, v := range batch {
				sums[i] += v
			}
			r.Release(len(batch))
		}
	}
	fmt.Println(sums)
	// Output: [499500 1000499500]
}
