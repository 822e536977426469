package bench

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/klagg/klagg/fakex"
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
	var tr bytes.Buffer
	cfg.Trace = &tr
	res, err := RunE2E(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// go tool trace reads what the latency phase wrote: its header, then events.
	if hdr, _, ok := bytes.Cut(tr.Bytes(), []byte(" trace\x00")); !ok || !bytes.HasPrefix(hdr, []byte("go 1.")) || tr.Len() < 1024 {
		t.Errorf("execution trace of %d bytes, not a Go trace: %q", tr.Len(), tr.Bytes()[:min(tr.Len(), 16)])
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
	if res.LatencySamples == 0 || res.P50LatencyUS <= 0 || res.P99LatencyUS < res.P50LatencyUS ||
		res.P999LatencyUS < res.P99LatencyUS || res.MaxLatencyUS < res.P999LatencyUS {
		t.Errorf("latency: %d samples, p50 %v p99 %v p99.9 %v max %v", res.LatencySamples,
			res.P50LatencyUS, res.P99LatencyUS, res.P999LatencyUS, res.MaxLatencyUS)
	}
	if res.WarmupSeconds <= 0 || res.AchievedRate <= 0 || res.PacingLagMaxUS < res.PacingLagP99US {
		t.Errorf("warm-up %v s, achieved %v frames/s, pacing lag p99 %v max %v", res.WarmupSeconds, res.AchievedRate,
			res.PacingLagP99US, res.PacingLagMaxUS)
	}
	if res.TradesPerSec <= 0 || res.NaiveTradesPerSec <= 0 {
		t.Errorf("rates %v %v", res.TradesPerSec, res.NaiveTradesPerSec)
	}
}

// TestFrameSet: the compact frame set holds exactly the frames the generator
// makes.
func TestFrameSet(t *testing.T) {
	cfg := fakex.DefaultGenConfig()
	cfg.Symbols = 20
	want := fakex.NewGenerator(cfg).Frames(1000)
	got := newFrameSet(fakex.NewGenerator(cfg), 1000)
	if got.Len() != len(want) {
		t.Fatalf("%d frames, want %d", got.Len(), len(want))
	}
	for i := range want {
		if f := got.Frame(i); !bytes.Equal(f, want[i]) || cap(f) != len(f) {
			t.Fatalf("frame %d: %q (cap %d), want %q", i, f, cap(f), want[i])
		}
	}
}

func TestQuantileUS(t *testing.T) {
	v := []int64{5000, 1000, 3000, 2000, 4000}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0, 1}, {0.2, 1}, {0.5, 3}, {0.99, 5}, {1, 5}} {
		if got := quantileUS(v, c.q); got != c.want {
			t.Errorf("quantileUS(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}
