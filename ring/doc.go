// Package ring provides bounded single-producer single-consumer lock-free
// queues that move values by batch, in the style of go-disruptor.
//
// The producer reserves a contiguous run of slots (Reserve), fills it in place
// and publishes it with one atomic store (Publish). The consumer takes every
// published item up to the end of the buffer (Peek), reads it in place and frees
// the run with one atomic store (Release). Each side keeps a private copy of
// the other's index and reloads the shared one only when the ring looks full
// (producer) or empty (consumer), so a busy pipeline touches the other side's
// cache line about once per batch rather than once per item. Indices, private
// state and the wake-up flags sit on separate padded cache lines.
//
// When there is nothing to do, a side waits through a Waiter: it spins
// Config.Spin times, yields Config.Yield times and for up to Config.YieldFor,
// then parks on a channel, so an idle daemon burns no CPU. The timed yield
// adapts: a waiter whose last waits found no work within YieldFor parks without
// it until work comes within YieldFor again, so a busy pipeline never parks and
// an idle one does not yield after every item. Publish, Close and Release wake the other side only
// when its parked flag is set; on the busy path the flag costs one atomic load
// and is never written. A consumer that drains several rings (one per producer)
// passes one Waiter to each New and waits with a ready function that checks
// them all; see the example.
//
// Goroutines: the producer methods (Reserve, TryReserve, Publish, Write, Close)
// belong to one goroutine and the consumer methods (Peek, Release, Ready, Done,
// Wait) to one other; Len, Cap, Stats and Waiter.Wake may be called from any.
// Slices returned by Reserve are valid until Publish, those returned by Peek
// until the items are released.
//
// Misuse (publishing more than was reserved, releasing more than was peeked,
// reserving after Close) panics with a message starting "BUG:". Build with
// -tags invariants to also check the shared indices on every Publish and
// Release. ring logs nothing and imports no other klagg package.
package ring
