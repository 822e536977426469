package bench

import (
	"context"
	"testing"
	"time"
)

// TestRunE2E runs a tiny end-to-end benchmark: every phase must really process the
// frames (trades applied, klines closed, latency samples taken). Speed is not judged
// here; that is what `klagg bench` and RESULTS.md are for.
func TestRunE2E(t *testing.T) {
	cfg := DefaultE2EConfig()
	cfg.Duration = 200 * time.Millisecond
	cfg.Symbols = 50
	cfg.Frames = 50_000
	cfg.Naive = 20_000
	cfg.Rate = 20_000
	cfg.DataRate = 500 // 100 s of market time: minutes close
	res, err := RunE2E(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Trades != uint64(res.Passes)*uint64(cfg.Frames) {
		t.Errorf("trades %d over %d passes of %d frames", res.Trades, res.Passes, cfg.Frames)
	}
	if res.NaiveTrades != cfg.Naive {
		t.Errorf("naive trades %d, want %d", res.NaiveTrades, cfg.Naive)
	}
	if res.KlinesClosed == 0 || res.KlineUpdates == 0 {
		t.Errorf("klines closed %d updates %d", res.KlinesClosed, res.KlineUpdates)
	}
	if res.LatencySamples == 0 || res.P99LatencyUS <= 0 || res.P99LatencyUS < res.P50LatencyUS {
		t.Errorf("latency: %d samples, p50 %v p99 %v", res.LatencySamples, res.P50LatencyUS, res.P99LatencyUS)
	}
	if res.TradesPerSec <= 0 || res.NaiveTradesPerSec <= 0 {
		t.Errorf("rates %v %v", res.TradesPerSec, res.NaiveTradesPerSec)
	}
}
