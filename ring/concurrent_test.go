package ring

import (
	"fmt"
	"sync"
	"testing"
)

// itemCount scales the concurrent tests: millions normally, fewer under -race
// (which slows atomics several times) or -short.
func itemCount(full int) int {
	switch {
	case testing.Short():
		return full / 40
	case raceEnabled:
		return full / 4
	}
	return full
}

// produce writes the sequence numbers 0..n-1 in batches of up to batch and
// closes the ring; batch 1 publishes item by item.
func produce(r *Ring[uint64], n, batch int) {
	for seq := 0; seq < n; {
		s := r.Reserve(min(batch, n-seq))
		for i := range s {
			s[i] = uint64(seq + i)
		}
		r.Publish(len(s))
		seq += len(s)
	}
	r.Close()
}

// TestSPSC checks that every item arrives exactly once and in order, with
// rings small enough to force full and empty waits and parking.
func TestSPSC(t *testing.T) {
	for _, tc := range []struct {
		size, batch, n int
		cfg            Config
	}{
		{2, 1, itemCount(200_000), Config{}},
		{2, 2, itemCount(200_000), DefaultConfig()},
		{4, 3, itemCount(500_000), Config{Spin: 0, Yield: 1}},
		{64, 1, itemCount(1_000_000), DefaultConfig()},
		{4096, 256, itemCount(5_000_000), DefaultConfig()},
	} {
		tc.cfg.Size = tc.size
		t.Run(fmt.Sprintf("size=%d/batch=%d/spin=%d/yield=%d", tc.size, tc.batch, tc.cfg.Spin, tc.cfg.Yield), func(t *testing.T) {
			t.Parallel()
			r := New[uint64](tc.cfg, nil)
			go produce(r, tc.n, tc.batch)
			var want uint64
			for !r.Done() {
				p := r.Peek()
				if len(p) == 0 {
					r.Wait(0)
					continue
				}
				for _, v := range p {
					if v != want {
						t.Fatalf("got %d, want %d", v, want)
					}
					want++
				}
				r.Release(len(p))
			}
			if want != uint64(tc.n) {
				t.Fatalf("received %d items, want %d", want, tc.n)
			}
			st := r.Stats()
			if st.Published != uint64(tc.n) || st.Released != uint64(tc.n) {
				t.Fatalf("stats %+v", st)
			}
			t.Logf("n=%d %+v", tc.n, st)
		})
	}
}

// TestSharedWaiter has several producers, each with its own ring, and one
// consumer waiting on a Waiter shared by all rings. Spin and Yield are 0 so the
// consumer parks every time it finds nothing: a lost wake-up would hang.
func TestSharedWaiter(t *testing.T) {
	const producers = 4
	n := itemCount(200_000)
	cfg := Config{Size: 8}
	w := NewWaiter(cfg)
	rings := make([]*Ring[uint64], producers)
	for i := range rings {
		rings[i] = New[uint64](cfg, w)
		go produce(rings[i], n, 1+i*3)
	}
	want := make([]uint64, producers)
	ready := func() bool {
		for _, r := range rings {
			if r.Ready() {
				return true
			}
		}
		return false
	}
	for live := producers; live > 0; {
		w.Wait(ready, 0)
		live = 0
		for i, r := range rings {
			if r.Done() {
				continue
			}
			live++
			p := r.Peek()
			for _, v := range p {
				if v != want[i] {
					t.Fatalf("ring %d: got %d, want %d", i, v, want[i])
				}
				want[i]++
			}
			r.Release(len(p))
		}
	}
	for i, got := range want {
		if got != uint64(n) {
			t.Fatalf("ring %d: received %d, want %d", i, got, n)
		}
	}
	st := w.Stats()
	t.Logf("n=%d/ring waiter %+v", n, st)
	if st.Parks == 0 {
		t.Error("consumer never parked; the test did not exercise wake-ups")
	}
}

// TestWriteClose checks that Close after Write hands the consumer every item.
func TestWriteClose(t *testing.T) {
	for _, size := range []int{1, 2, 16} {
		r := New[uint64](Config{Size: size, Spin: 10, Yield: 2}, nil)
		const n = 10_000
		var wg sync.WaitGroup
		wg.Go(func() {
			items := make([]uint64, 7)
			for seq := uint64(0); seq < n; seq += uint64(len(items)) {
				items = items[:min(uint64(cap(items)), n-seq)]
				for i := range items {
					items[i] = seq + uint64(i)
				}
				r.Write(items)
			}
			r.Close()
		})
		var got uint64
		for r.Wait(0) && !r.Done() {
			p := r.Peek()
			for _, v := range p {
				if v != got {
					t.Fatalf("size %d: got %d, want %d", size, v, got)
				}
				got++
			}
			r.Release(len(p))
		}
		wg.Wait()
		if got != n {
			t.Fatalf("size %d: received %d of %d", size, got, n)
		}
	}
}
