package ring

import (
	"errors"
	"strings"
	"testing"
)

func mustPanicBUG(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		v := recover()
		s, _ := v.(string)
		if !strings.HasPrefix(s, "BUG:") {
			t.Fatalf("%s: recovered %v, want a BUG: panic", name, v)
		}
	}()
	f()
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		size, want int
	}{{0, 4096}, {1, 1}, {2, 2}, {3, 4}, {5, 8}, {4096, 4096}, {4097, 8192}} {
		r := New[int](Config{Size: tc.size}, nil)
		if r.Cap() != tc.want {
			t.Errorf("Size %d: Cap %d, want %d", tc.size, r.Cap(), tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{Size: -1}, {Size: MaxSize + 1}, {Spin: -1}, {Yield: -1}} {
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: Validate = %v, want ErrConfig", c, err)
		}
	}
	mustPanicBUG(t, "New(bad)", func() { New[int](Config{Size: -1}, nil) })
}

// TestWrap walks the indices round the buffer several times with every batch
// size, checking partial reserves at the wrap, partial publishes and releases,
// and that items come out in order.
func TestWrap(t *testing.T) {
	const size = 8
	for batch := 1; batch <= size+1; batch++ {
		r := New[int](Config{Size: size}, nil)
		next, want := 0, 0
		for round := 0; round < 5*size; round++ {
			s := r.TryReserve(batch)
			if len(s) > batch {
				t.Fatalf("batch %d: reserved %d", batch, len(s))
			}
			if free := size - r.Len(); len(s) == 0 && free != 0 {
				t.Fatalf("batch %d: TryReserve empty with %d free", batch, free)
			}
			// A reservation never crosses the end of the buffer.
			if i := next % size; len(s) > size-i {
				t.Fatalf("batch %d: reserve of %d at %d crosses the wrap", batch, len(s), i)
			}
			pub := len(s) - len(s)/3 // publish only part of it sometimes
			for i := range pub {
				s[i] = next + i
			}
			r.Publish(pub)
			next += pub
			if r.Len() != next-want {
				t.Fatalf("Len %d, want %d", r.Len(), next-want)
			}
			p := r.Peek()
			rel := len(p) - len(p)/2
			for i, v := range p[:rel] {
				if v != want+i {
					t.Fatalf("batch %d: got %d, want %d", batch, v, want+i)
				}
			}
			r.Release(rel)
			want += rel
		}
		for p := r.Peek(); len(p) > 0; p = r.Peek() {
			for i, v := range p {
				if v != want+i {
					t.Fatalf("drain: got %d, want %d", v, want+i)
				}
			}
			want += len(p)
			r.Release(len(p))
		}
		if want != next || next < 2*size {
			t.Fatalf("batch %d: drained %d of %d", batch, want, next)
		}
		if st := r.Stats(); st.Published != uint64(next) || st.Released != uint64(want) {
			t.Fatalf("stats %+v", st)
		}
	}
}

func TestPartialReserveAtWrap(t *testing.T) {
	r := New[int](Config{Size: 4}, nil)
	r.Write([]int{0, 1, 2})
	r.Peek()
	r.Release(3) // indices 3.. now; ring empty
	if s := r.Reserve(4); len(s) != 1 {
		t.Fatalf("at index 3 reserved %d slots, want 1 (up to the wrap)", len(s))
	}
	r.Publish(1)
	if s := r.Reserve(4); len(s) != 3 {
		t.Fatalf("after the wrap reserved %d slots, want 3 (one in use)", len(s))
	}
	r.Publish(0)
	// Release items one at a time from a single Peek.
	r.Write([]int{4, 5})
	p := r.Peek()
	if len(p) != 1 || p[0] != 0 {
		t.Fatalf("Peek up to the wrap = %v, want [0]", p)
	}
	r.Release(1)
	p = r.Peek()
	if len(p) != 2 || p[0] != 4 || p[1] != 5 {
		t.Fatalf("Peek after the wrap = %v, want [4 5]", p)
	}
	r.Release(1)
	r.Release(1)
	if len(r.Peek()) != 0 || r.Len() != 0 {
		t.Fatal("ring not empty")
	}
}

func TestFull(t *testing.T) {
	r := New[int](Config{Size: 4}, nil)
	r.Write([]int{1, 2, 3, 4})
	if s := r.TryReserve(1); len(s) != 0 {
		t.Fatalf("TryReserve on a full ring = %d slots", len(s))
	}
	r.Peek()
	r.Release(2)
	if s := r.TryReserve(8); len(s) != 2 {
		t.Fatalf("TryReserve after Release(2) = %d slots, want 2", len(s))
	}
}

func TestPeekSeesNewItems(t *testing.T) {
	r := New[int](Config{Size: 8}, nil)
	r.Write([]int{1})
	if len(r.Peek()) != 1 {
		t.Fatal("want 1")
	}
	r.Write([]int{2, 3})
	if p := r.Peek(); len(p) != 3 {
		t.Fatalf("second Peek without Release = %v, want 3 items", p)
	}
}

func TestClose(t *testing.T) {
	r := New[int](Config{Size: 4}, nil)
	r.Write([]int{1, 2, 3})
	if r.Done() {
		t.Fatal("Done before Close")
	}
	r.Close()
	r.Close() // idempotent
	if r.Done() || !r.Ready() {
		t.Fatal("Done with items left, or not Ready")
	}
	p := r.Peek()
	if len(p) != 3 {
		t.Fatalf("after Close Peek = %v", p)
	}
	r.Release(2)
	if r.Done() {
		t.Fatal("Done with one item left")
	}
	r.Release(1)
	if !r.Done() || !r.Ready() || len(r.Peek()) != 0 {
		t.Fatal("not Done after draining")
	}
	mustPanicBUG(t, "Reserve after Close", func() { r.Reserve(1) })
}

func TestMisuse(t *testing.T) {
	r := New[int](Config{Size: 4}, nil)
	mustPanicBUG(t, "Reserve(0)", func() { r.Reserve(0) })
	mustPanicBUG(t, "TryReserve(-1)", func() { r.TryReserve(-1) })
	r.Reserve(2)
	mustPanicBUG(t, "Publish(3)", func() { r.Publish(3) })
	mustPanicBUG(t, "Publish(-1)", func() { r.Publish(-1) })
	r.Publish(2)
	mustPanicBUG(t, "Publish again", func() { r.Publish(1) })
	r.Peek()
	mustPanicBUG(t, "Release(3)", func() { r.Release(3) })
	mustPanicBUG(t, "Release(-1)", func() { r.Release(-1) })
	r.Release(2)
	mustPanicBUG(t, "Release again", func() { r.Release(1) })
}

// TestInvariantChecks corrupts the shared indices to prove the invariants
// build catches an overrun (the cheap checks cannot see it).
func TestInvariantChecks(t *testing.T) {
	if !invariants {
		t.Skip("needs -tags invariants")
	}
	r := New[int](Config{Size: 4}, nil)
	r.Reserve(2)
	r.head.Store(100) // consumer claims to be ahead of the producer
	mustPanicBUG(t, "producer check", func() { r.Publish(1) })

	r = New[int](Config{Size: 4}, nil)
	r.Write([]int{1, 2})
	r.Peek()
	r.tail.Store(0) // producer index went backwards
	mustPanicBUG(t, "consumer check", func() { r.Release(1) })
}

func TestAllocs(t *testing.T) {
	r := New[item64](DefaultConfig(), nil)
	var sink uint64
	allocs := testing.AllocsPerRun(1000, func() {
		s := r.Reserve(64)
		for i := range s {
			s[i].a = uint64(i)
		}
		r.Publish(len(s))
		if !r.Wait(0) { // ready at once: the wait path allocates nothing either
			t.Fatal("Wait: not ready after Publish")
		}
		for p := r.Peek(); len(p) > 0; p = r.Peek() {
			sink += p[0].a
			r.Release(len(p))
		}
	})
	if allocs != 0 {
		t.Fatalf("Reserve/Publish/Peek/Release allocate %v per run, want 0", allocs)
	}
	_ = sink
}
