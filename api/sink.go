package api

import "github.com/klagg/klagg/shard"

// KlineSink is what the pipeline's sink goroutine calls (pipeline.Sink's
// methods, named here so that api does not import pipeline).
type KlineSink interface {
	Kline(k *shard.Kline) error
	Close() error
}

// Sink tees the pipeline's kline events: it publishes each to Server first
// (non-blocking, so WebSocket clients see a close before the store has written
// it) and then hands it to Next (the store, or nil). It satisfies
// pipeline.Sink. Called on the sink goroutine only.
type Sink struct {
	Server *Server
	Next   KlineSink
}

// Kline implements pipeline.Sink.
func (s Sink) Kline(k *shard.Kline) error {
	s.Server.Publish(k)
	if s.Next != nil {
		return s.Next.Kline(k)
	}
	return nil
}

// Close closes Next; the Server is closed by its owner.
func (s Sink) Close() error {
	if s.Next != nil {
		return s.Next.Close()
	}
	return nil
}
