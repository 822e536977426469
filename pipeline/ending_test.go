package pipeline

import (
	"context"
	"testing"
	"time"
)

// TestRunEndsWhenSourcesEnd runs many short pipelines whose aggregators park with
// no timeout (Idle 0): the last source's rings close just before the pipeline
// is marked ending, so an aggregator woken by the Close can find it not yet
// ending and park again; the ending itself must wake it, or Run never returns.
func TestRunEndsWhenSourcesEnd(t *testing.T) {
	frames, names := feed(8, 40, 3)
	cfg := testConfig(t, "1m")
	cfg.Shards = 2
	runs := 400
	if testing.Short() {
		runs = 50
	}
	for i := range runs {
		p, err := New(cfg, table(names), []Source{&Frames{Frames: frames}}, newCollector(table(names), cfg.Shard.Intervals), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Run(context.Background()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("run %d: Run did not return a minute after its only source ended", i)
		}
	}
}
