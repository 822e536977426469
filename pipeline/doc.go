// Package pipeline wires klagg's stages together: sources decode frames on pinned
// I/O goroutines and route each trade to the shard that owns its symbol through one
// single-producer single-consumer ring per (source, shard) pair; one aggregator
// goroutine per shard drains its rings and owns that shard's kline state; aggregators
// hand kline events to the sink goroutine through one ring per shard.
//
// Ownership, written down once:
//
//	Feeder      one per source; used only by that source's goroutine (it owns the decoder,
//	            the staging batches and the producer side of its rings).
//	Aggregator  one per shard; used only by that shard's goroutine (consumer of its input
//	            rings, producer of its output ring).
//	Sink        called only from the sink goroutine.
//
// Watermark: a source publishes its watermark only after every trade up to it sits in
// a ring, and an aggregator reads the watermark before draining its rings, so a kline
// is never closed ahead of a trade that was already handed over. A replay's watermark
// is the largest trade time it has seen; a live source's (Config.Clock) is its
// progress: the exchange time up to which it read everything (Feeder.Progress). The
// pipeline's watermark is the smallest of the running sources' watermarks, bounded by
// the clock, so a slow or blocked source delays closing instead of seeing its trades
// turned into late corrections. A source waiting for one symbol's missing trades holds
// that symbol alone, with an in-band command (shard.OpHold).
//
// In-band control: retirements, holds and gap marks are routed like trades
// (Feeder.Command), through the same rings, so they never overtake the trades they
// must follow.
//
// Sources may be added while running (AddSource: a live feed growing a connection);
// aggregators see them through copy-on-write slices.
//
// Graceful shutdown: when every source has returned, each Feeder flushes and closes its
// rings; aggregators drain what is left, close their klines up to the final watermark
// (a replay: the largest trade time of the whole input; a live feed: the clock, and its
// open klines go out as updates rather than closed half-way) and close their output
// rings; the sink goroutine drains those and closes the sink. A sink error cancels the
// sources and ends Run with that error; nothing is left blocked on the dead sink.
package pipeline
