package ring

// Run side by side with:
//
//	go test -run '^$' -bench . -benchtime 2s ./ring/
//
// BenchmarkHandoff moves a 64-byte struct from a producer goroutine to a
// consumer goroutine. One b.Loop iteration is one chunk of handoffChunk items,
// so read the ns/item and items/s metrics, not ns/op.

import (
	"testing"

	"github.com/Workiva/go-datastructures/queue"
)

// item64 is the 64-byte payload the benchmarks move (one cache line, like parse.Trade).
type item64 struct {
	a uint64
	_ [7]uint64
}

const (
	handoffChunk = 256  // items per b.Loop iteration, and the batched producer's batch
	handoffSize  = 4096 // slots in every queue
)

var benchSink uint64

func BenchmarkHandoff(b *testing.B) {
	for _, bc := range []struct {
		name string
		run  func(b *testing.B) int // returns items moved
	}{
		{"impl=ring-batched", func(b *testing.B) int { return benchRing(b, handoffChunk) }},
		{"impl=ring-single", func(b *testing.B) int { return benchRing(b, 1) }},
		{"impl=chan-buffered", benchChan},
		{"impl=workiva", benchWorkiva},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(handoffChunk * 64)
			items := bc.run(b)
			ns := float64(b.Elapsed().Nanoseconds())
			b.ReportMetric(ns/float64(items), "ns/item")
			b.ReportMetric(float64(items)/ns*1e9, "items/s")
		})
	}
}

// benchRing publishes up to batch items per Publish; the consumer drains
// whole ranges.
func benchRing(b *testing.B, batch int) int {
	cfg := DefaultConfig()
	cfg.Size = handoffSize
	r := New[item64](cfg, nil)
	done := make(chan uint64)
	go func() {
		var sum uint64
		for {
			p := r.Peek()
			if len(p) == 0 {
				if r.Done() {
					break
				}
				r.Wait(0)
				continue
			}
			for i := range p {
				sum += p[i].a
			}
			r.Release(len(p))
		}
		done <- sum
	}()
	var seq uint64
	for b.Loop() {
		for left := handoffChunk; left > 0; {
			s := r.Reserve(min(batch, left))
			for i := range s {
				s[i] = item64{a: seq}
				seq++
			}
			r.Publish(len(s))
			left -= len(s)
		}
	}
	r.Close()
	benchSink += <-done
	st := r.Stats()
	b.ReportMetric(float64(st.Consumer.Parks)/float64(seq)*1e6, "cons-parks/Mitem")
	b.ReportMetric(float64(st.FullWaits)/float64(seq)*1e6, "full-waits/Mitem")
	return int(seq)
}

func benchChan(b *testing.B) int {
	ch := make(chan item64, handoffSize)
	done := make(chan uint64)
	go func() {
		var sum uint64
		for it := range ch {
			sum += it.a
		}
		done <- sum
	}()
	var seq uint64
	for b.Loop() {
		for range handoffChunk {
			ch <- item64{a: seq}
			seq++
		}
	}
	close(ch)
	benchSink += <-done
	return int(seq)
}

// benchWorkiva boxes each item into an interface, as its API requires.
func benchWorkiva(b *testing.B) int {
	rb := queue.NewRingBuffer(handoffSize)
	const end = ^uint64(0)
	done := make(chan uint64)
	go func() {
		var sum uint64
		for {
			v, err := rb.Get()
			if err != nil {
				panic(err)
			}
			it := v.(item64)
			if it.a == end {
				break
			}
			sum += it.a
		}
		done <- sum
	}()
	var seq uint64
	for b.Loop() {
		for range handoffChunk {
			if err := rb.Put(item64{a: seq}); err != nil {
				b.Fatal(err)
			}
			seq++
		}
	}
	if err := rb.Put(item64{a: end}); err != nil {
		b.Fatal(err)
	}
	benchSink += <-done
	return int(seq)
}

// BenchmarkPublishRelease is the single-goroutine cost of one batch round trip:
// Reserve, fill, Publish, Peek, Release (no cache-line transfer between cores).
func BenchmarkPublishRelease(b *testing.B) {
	for _, batch := range []int{1, 64, 256} {
		b.Run("batch="+itoa(batch), func(b *testing.B) {
			r := New[item64](Config{Size: handoffSize}, nil)
			b.ReportAllocs()
			b.SetBytes(int64(batch) * 64)
			var sum uint64
			for b.Loop() {
				s := r.Reserve(batch)
				for i := range s {
					s[i].a = uint64(i)
				}
				r.Publish(len(s))
				p := r.Peek()
				for i := range p {
					sum += p[i].a
				}
				r.Release(len(p))
			}
			benchSink += sum
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/item")
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
