package api

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/klagg/klagg/shard"
)

// naiveKlines is the History contract written the obvious way.
func naiveKlines(all []shard.Kline, start, end int64, limit int) []shard.Kline {
	var in []shard.Kline
	for _, k := range all {
		if (start == Unset || k.OpenTime >= start) && (end == Unset || k.OpenTime <= end) {
			in = append(in, k)
		}
	}
	if len(in) > limit {
		if start != Unset {
			in = in[:limit]
		} else {
			in = in[len(in)-limit:]
		}
	}
	return in
}

func opens(ks []shard.Kline) []int64 {
	out := make([]int64, len(ks))
	for i, k := range ks {
		out[i] = k.OpenTime
	}
	return out
}

// MemHistory and mergeKlines against the naive reference on random data.
func TestHistoryAndMergeProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for iter := 0; iter < 2000; iter++ {
		n := rng.IntN(40)
		var all []shard.Kline
		h := NewMemHistory()
		for i := 0; i < n; i++ {
			if rng.IntN(4) == 0 {
				continue // holes
			}
			k := shard.Kline{OpenTime: int64(i) * minute, Count: int64(i)}
			all = append(all, k)
		}
		// Insert out of order: Add sorts.
		perm := slices.Clone(all)
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		h.Add("X", "1m", perm...)
		pick := func() int64 {
			if rng.IntN(3) == 0 {
				return Unset
			}
			return int64(rng.IntN(45)-2) * minute
		}
		start, end, limit := pick(), pick(), 1+rng.IntN(12)
		got, err := h.Klines(context.Background(), "X", "1m", start, end, limit)
		if err != nil {
			t.Fatal(err)
		}
		if want := naiveKlines(all, start, end, limit); !slices.Equal(opens(got), opens(want)) {
			t.Fatalf("MemHistory(%d,%d,%d) = %v, want %v", start, end, limit, opens(got), opens(want))
		}
		// The store lags by k klines; recent holds the last r (the newest may be open).
		lag, r := rng.IntN(3), 1+rng.IntN(4)
		stored := all[:max(0, len(all)-lag)]
		recent := slices.Clone(all[max(0, len(all)-r):])
		for i := range recent {
			recent[i].Count += 1000 // recent wins for the same open time
		}
		truth := slices.Clone(all)
		for i := range truth {
			if i >= len(all)-r {
				truth[i].Count += 1000
			}
		}
		q := klinesQuery{Start: start, End: end, Limit: limit}
		hist := naiveKlines(stored, start, end, limit)
		merged := mergeKlines(hist, recent, q)
		want := naiveKlines(truth, start, end, limit)
		// Correct whenever the lag is covered by recent (lag < r), as the server keeps it.
		if lag < r {
			if !slices.Equal(opens(merged), opens(want)) {
				t.Fatalf("merge(lag %d, recent %d, q %+v) = %v, want %v", lag, r, q, opens(merged), opens(want))
			}
			for i := range merged {
				if merged[i].Count != want[i].Count {
					t.Fatalf("merge kept the stale kline at %d", merged[i].OpenTime)
				}
			}
		}
	}
}
