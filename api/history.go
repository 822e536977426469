package api

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/klagg/klagg/shard"
)

// MemHistory is an in-memory History: closed klines per symbol and interval,
// kept sorted by open time. It serves tests, benchmarks and small setups.
// Safe for concurrent use.
type MemHistory struct {
	mu     sync.RWMutex
	series map[string][]shard.Kline // by symbol + " " + interval
}

// NewMemHistory returns an empty history.
func NewMemHistory() *MemHistory { return &MemHistory{series: map[string][]shard.Kline{}} }

func historyKey(symbol, interval string) string { return symbol + " " + interval }

// Add stores klines of symbol and interval; a kline with the open time of a
// stored one replaces it (a correction).
func (h *MemHistory) Add(symbol, interval string, klines ...shard.Kline) {
	key := historyKey(symbol, interval)
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.series[key]
	for _, k := range klines {
		i, found := slices.BinarySearchFunc(s, k.OpenTime, func(x shard.Kline, t int64) int { return cmp.Compare(x.OpenTime, t) })
		if found {
			s[i] = k
		} else {
			s = slices.Insert(s, i, k)
		}
	}
	h.series[key] = s
}

// Len returns how many klines are stored for symbol and interval.
func (h *MemHistory) Len(symbol, interval string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.series[historyKey(symbol, interval)])
}

// Klines implements History.
func (h *MemHistory) Klines(ctx context.Context, symbol, interval string, start, end int64, limit int) ([]shard.Kline, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	s := h.series[historyKey(symbol, interval)]
	lo, hi := 0, len(s)
	if start != Unset {
		lo, _ = slices.BinarySearchFunc(s, start, func(x shard.Kline, t int64) int { return cmp.Compare(x.OpenTime, t) })
	}
	if end != Unset {
		hi, _ = slices.BinarySearchFunc(s, end+1, func(x shard.Kline, t int64) int { return cmp.Compare(x.OpenTime, t) })
	}
	if lo >= hi || limit < 1 {
		return nil, nil
	}
	if start != Unset {
		hi = min(hi, lo+limit)
	} else {
		lo = max(lo, hi-limit)
	}
	return slices.Clone(s[lo:hi]), nil
}
