package feed

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// clock estimates the exchange's time from its last reading and the local
// monotonic clock since then.
type clock struct {
	base   time.Time // local monotonic reference
	mu     sync.Mutex
	offset atomic.Int64 // exchange ms - local ms since base
	synced atomic.Bool
}

func (c *clock) set(serverMillis int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.base.IsZero() {
		c.base = time.Now()
	}
	c.offset.Store(serverMillis - time.Since(c.base).Milliseconds())
	c.synced.Store(true)
}

// now returns the exchange time in Unix ms, or math.MinInt64 before the first
// reading.
func (c *clock) now() int64 {
	if !c.synced.Load() {
		return math.MinInt64
	}
	return time.Since(c.base).Milliseconds() + c.offset.Load()
}

// offsetMillis is how far the exchange's clock is ahead of the local wall
// clock (negative: behind); 0 before the first reading.
func (c *clock) offsetMillis() int64 {
	now := c.now()
	if now == math.MinInt64 {
		return 0
	}
	return now - time.Now().UnixMilli()
}
