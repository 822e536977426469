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
// Watermark: a source publishes the largest trade time it has seen only after every
// trade up to it sits in a ring, and an aggregator reads the watermark before draining
// its rings, so a kline is never closed ahead of a trade that was already handed over.
// The pipeline's watermark is the smallest of the running sources' watermarks, so a
// slow source never sees its trades turned into late corrections by a fast one.
//
// Graceful shutdown: when every source has returned, each Feeder flushes and closes its
// rings; aggregators drain what is left, close their klines up to the final watermark
// (the largest trade time of the whole input) and close their output rings; the sink
// goroutine drains those and closes the sink.
package pipeline
