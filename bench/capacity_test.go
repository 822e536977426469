package bench

import (
	"context"
	"testing"
	"time"
)

// TestRunCapacity runs one small step of the capacity test over loopback: every
// trade fakex produced reaches the shards, and latency samples are taken. Speed is
// not judged here.
func TestRunCapacity(t *testing.T) {
	cfg := DefaultCapacityConfig()
	cfg.Symbols, cfg.Conns, cfg.Duration = 40, 2, time.Second
	cfg.Rates = []float64{5000}
	cfg.SLO = time.Hour // timing is not what this test checks
	res, err := RunCapacity(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := res.Steps[0]
	if st.Produced == 0 || st.Lost != 0 || st.Applied != st.Produced || st.Samples == 0 {
		t.Fatalf("step %+v", st)
	}
	if res.LostTrades != 0 {
		t.Fatalf("lost %d", res.LostTrades)
	}
}
