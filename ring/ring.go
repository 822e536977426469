package ring

import (
	"sync/atomic"
	"time"
)

// Ring is a bounded single-producer single-consumer queue of T, batch-first:
// the producer reserves a contiguous run of slots, fills it in place and
// publishes it with one atomic store; the consumer peeks a contiguous run of
// published items, reads them in place and releases them with one atomic store.
//
// Exactly one goroutine calls the producer methods (Reserve, TryReserve,
// Publish, Write, Close) and exactly one the consumer methods (Peek, Release,
// Ready, Done, Wait). Len, Cap, Stats and Waiter may be called from anywhere.
//
// Slots are reused, not cleared: a T holding pointers keeps them reachable
// until its slot is overwritten.
type Ring[T any] struct {
	_ pad
	// Read-only after New, except closed (written once, by Close).
	buf        []T
	mask       uint64
	cons       *Waiter     // the consumer's; woken by Publish and Close
	spaceReady func() bool // producer's ready func for prodWait, built once
	dataReady  func() bool // consumer's ready func for Wait, built once
	closed     atomic.Bool
	_          pad

	tail atomic.Uint64 // published: items [0, tail) were written; producer stores
	_    pad

	p struct {
		next       uint64 // producer's copy of tail
		cachedHead uint64 // last head seen; re-read only when the ring looks full
		reserved   uint64 // slots handed out by the last Reserve
		closed     bool
		fullWaits  atomic.Uint64 // Reserve calls that found the ring full
	}
	_ pad

	head atomic.Uint64 // released: slots [0, head) may be overwritten; consumer stores
	_    pad

	c struct {
		next       uint64 // consumer's copy of head
		cachedTail uint64 // last tail seen; re-read only when the ring looks empty
		peeked     uint64 // items handed out by the last Peek, not yet released
	}
	_ pad

	prodWait Waiter // the producer's, for a full ring; woken by Release
}

// Stats are a ring's counters. Published and Released are exact; the Waiter
// counters belong to the consumer's Waiter, which may be shared by other rings.
type Stats struct {
	Published     uint64 // items published since New
	Released      uint64 // items released since New
	FullWaits     uint64 // Reserve calls that found the ring full and had to wait
	ProducerParks uint64 // times the producer parked on a full ring
	Consumer      WaiterStats
}

// New returns an empty ring with cfg.Size slots (rounded up to a power of two).
// w is the consumer's Waiter, which Publish and Close wake; pass the same Waiter
// to every ring one consumer drains. If w is nil the ring makes its own from cfg.
// The producer's wait on a full ring always uses cfg's Spin and Yield.
// New panics if cfg is invalid (see Config.Validate).
func New[T any](cfg Config, w *Waiter) *Ring[T] {
	mustValidate(cfg)
	if w == nil {
		w = NewWaiter(cfg)
	}
	n := cfg.slots()
	r := &Ring[T]{
		buf:  make([]T, n),
		mask: uint64(n - 1),
		cons: w,
	}
	r.prodWait.init(cfg)
	r.spaceReady = r.hasSpace
	r.dataReady = r.Ready
	return r
}

// Cap returns the number of slots.
func (r *Ring[T]) Cap() int { return len(r.buf) }

// Len returns the number of published items not yet released. From a goroutine
// other than the producer and consumer it is a snapshot that may be stale.
func (r *Ring[T]) Len() int {
	h := r.head.Load() // head first: tail read later is never behind it
	return int(r.tail.Load() - h)
}

// Waiter returns the consumer's Waiter.
func (r *Ring[T]) Waiter() *Waiter { return r.cons }

// Stats returns the ring's counters. Any goroutine may call it.
func (r *Ring[T]) Stats() Stats {
	return Stats{
		Published:     r.tail.Load(),
		Released:      r.head.Load(),
		FullWaits:     r.p.fullWaits.Load(),
		ProducerParks: r.prodWait.parks.Load(),
		Consumer:      r.cons.Stats(),
	}
}

// ---- producer side ----

// Reserve returns between 1 and n free contiguous slots, waiting (spin, yield,
// park) while the ring is full. The run is shorter than n at the end of the
// buffer and when fewer slots are free. The slots hold stale values; fill them
// and call Publish. The slice is valid until the next Publish. Producer only.
func (r *Ring[T]) Reserve(n int) []T {
	s := r.TryReserve(n)
	if len(s) == 0 {
		s = r.reserveSlow(n)
	}
	return s
}

// TryReserve is Reserve without waiting: it returns an empty slice when the
// ring is full. Producer only.
func (r *Ring[T]) TryReserve(n int) []T {
	if n < 1 || r.p.closed {
		r.badReserve(n)
	}
	free := uint64(len(r.buf)) - (r.p.next - r.p.cachedHead)
	if free < uint64(n) {
		// Looks too full for this request: only now pay for the consumer's line.
		r.p.cachedHead = r.head.Load()
		free = uint64(len(r.buf)) - (r.p.next - r.p.cachedHead)
	}
	i := r.p.next & r.mask
	k := min(uint64(n), free, uint64(len(r.buf))-i)
	r.p.reserved = k
	return r.buf[i : i+k : i+k]
}

func (r *Ring[T]) reserveSlow(n int) []T {
	r.p.fullWaits.Add(1)
	r.prodWait.Wait(r.spaceReady, 0)
	return r.TryReserve(n)
}

// hasSpace is the producer's ready function: is any slot free?
func (r *Ring[T]) hasSpace() bool {
	r.p.cachedHead = r.head.Load()
	return r.p.next-r.p.cachedHead < uint64(len(r.buf))
}

func (r *Ring[T]) badReserve(n int) {
	if r.p.closed {
		panic("BUG: ring: Reserve after Close")
	}
	panic("BUG: ring: Reserve(n) with n < 1")
}

// Publish makes the first n slots of the last Reserve visible to the consumer
// with one atomic store, then wakes the consumer if it is parked (one atomic
// load when it is not). n may be smaller than the reservation; the rest is
// dropped. Publish(0) does nothing. Producer only.
func (r *Ring[T]) Publish(n int) {
	if uint64(n) > r.p.reserved { // also catches n < 0
		panic("BUG: ring: Publish(n) with n > reserved slots (or n < 0)")
	}
	if n == 0 {
		return
	}
	r.p.reserved = 0
	r.p.next += uint64(n)
	if invariants {
		r.checkProducer()
	}
	r.tail.Store(r.p.next)
	r.cons.Wake()
}

func (r *Ring[T]) checkProducer() {
	h := r.head.Load()
	if r.p.next-h > uint64(len(r.buf)) || h > r.p.next {
		panic("BUG: ring: producer overran the consumer")
	}
}

// Write publishes all of items, in order, waiting while the ring is full. It
// publishes once per contiguous run of free slots. Producer only.
func (r *Ring[T]) Write(items []T) {
	for len(items) > 0 {
		s := r.Reserve(len(items))
		k := copy(s, items)
		r.Publish(k)
		items = items[k:]
	}
}

// Close tells the consumer no more items will come: it drains what was
// published and then Done reports true. Close is idempotent; Reserve after
// Close panics. Producer only.
func (r *Ring[T]) Close() {
	if r.p.closed {
		return
	}
	r.p.closed = true
	r.p.reserved = 0
	r.closed.Store(true) // after the last tail store: seeing closed implies seeing all items
	r.cons.Wake()
}

// ---- consumer side ----

// Peek returns the published items from the oldest unreleased one up to the
// end of the buffer or the newest published one, without waiting; it is empty
// when nothing is published. The items stay valid and unchanged until they are
// released. Consumer only.
func (r *Ring[T]) Peek() []T {
	if r.c.next+r.c.peeked == r.c.cachedTail {
		// Looks empty: only now pay for the producer's line.
		r.c.cachedTail = r.tail.Load()
	}
	i := r.c.next & r.mask
	k := min(r.c.cachedTail-r.c.next, uint64(len(r.buf))-i)
	r.c.peeked = k
	return r.buf[i : i+k : i+k]
}

// Release frees the first n items of the last Peek with one atomic store and
// wakes the producer if it is parked on a full ring. The other peeked items stay
// valid: Release(k) again frees the next k. Consumer only.
func (r *Ring[T]) Release(n int) {
	if uint64(n) > r.c.peeked { // also catches n < 0
		panic("BUG: ring: Release(n) with n > peeked items (or n < 0)")
	}
	if n == 0 {
		return
	}
	r.c.peeked -= uint64(n)
	r.c.next += uint64(n)
	if invariants {
		r.checkConsumer()
	}
	r.head.Store(r.c.next)
	r.prodWait.Wake()
}

func (r *Ring[T]) checkConsumer() {
	if t := r.tail.Load(); r.c.next > t || t-r.c.next > uint64(len(r.buf)) {
		panic("BUG: ring: consumer overran the producer")
	}
}

// Ready reports whether Peek would return items or the ring is closed: the
// condition a consumer waits for. Use it in the ready function of a shared
// Waiter. Consumer only.
func (r *Ring[T]) Ready() bool {
	if r.c.next != r.c.cachedTail {
		return true
	}
	r.c.cachedTail = r.tail.Load()
	return r.c.next != r.c.cachedTail || r.closed.Load()
}

// Done reports whether the ring is closed and every item has been released.
// Consumer only.
func (r *Ring[T]) Done() bool {
	// closed first: Close stores it after the last tail store.
	return r.closed.Load() && r.tail.Load() == r.c.next
}

// Wait blocks on the consumer's Waiter until Ready or timeout (<= 0: none) and
// reports Ready. It suits a consumer that owns this ring alone; one that drains
// several rings calls Waiter().Wait with its own ready function. Consumer only.
func (r *Ring[T]) Wait(timeout time.Duration) bool {
	return r.cons.Wait(r.dataReady, timeout)
}
