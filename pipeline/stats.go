package pipeline

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// Stats sums every stage's counters. Each stage owns its counters while running; Run
// collects them once every goroutine has stopped, so no counter is read while written.
type Stats struct {
	Elapsed           time.Duration
	Sources           FeederStats
	Parse             parse.Counters
	Shard             shard.Counters
	KlinesClosed      uint64 // closed (and corrected) klines delivered to the sink
	KlineUpdates      uint64 // running kline updates delivered to the sink
	KlineMarks        uint64 // flag-only marks of closed klines delivered to the sink
	KlinesUndelivered uint64 // events drained after the sink failed, not delivered
	AggWakes          uint64 // times an idle aggregator waited for work
	Rings             RingStats
	Watermark         int64 // the pipeline's watermark (Snapshot only)
}

// RingStats sums the rings' counters: how often a side had to wait.
type RingStats struct {
	Published     uint64 // items handed over through input rings
	FullWaits     uint64 // times a source found a shard's ring full (backpressure)
	ProducerParks uint64 // of those, times it parked
	ConsumerParks uint64 // times an aggregator or the sink parked for lack of work
	Queued        uint64 // trades in the input rings now (Snapshot only)
}

// published is a stage's counters as its goroutine last published them, for
// reads while the pipeline runs (Snapshot). The owner publishes at most every
// batch or idle moment; a mutex copy costs it a few dozen nanoseconds.
type published[T any] struct {
	mu sync.Mutex
	v  T
}

func (p *published[T]) store(v *T) {
	p.mu.Lock()
	p.v = *v
	p.mu.Unlock()
}

func (p *published[T]) load() T {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.v
}

// feederSnap is what a feeder publishes.
type feederSnap struct {
	stats FeederStats
	parse parse.Counters
}

// sinkSnap is what the sink goroutine publishes.
type sinkSnap struct {
	closed, updates, marks, undelivered uint64
}

// Snapshot returns the pipeline's counters while it runs, as each stage last
// published them (a fraction of a second old at most while busy). Any goroutine
// may call it; Stats is the exact total after Run.
func (p *Pipeline) Snapshot() Stats {
	var st Stats
	for _, f := range *p.feeders.Load() {
		fs := f.snap.load()
		st.Sources.Frames += fs.stats.Frames
		st.Sources.Bytes += fs.stats.Bytes
		st.Sources.Trades += fs.stats.Trades
		st.Sources.Commands += fs.stats.Commands
		st.Sources.Learned += fs.stats.Learned
		st.Sources.Batches += fs.stats.Batches
		st.Parse.Add(&fs.parse)
	}
	for _, a := range p.aggs {
		st.Shard.Add(a.snap.load())
		st.Rings.ConsumerParks += a.waiter.Stats().Parks
		for _, r := range *a.inputs.Load() {
			rs := r.Stats()
			st.Rings.Published += rs.Published
			st.Rings.FullWaits += rs.FullWaits
			st.Rings.ProducerParks += rs.ProducerParks
			st.Rings.Queued += rs.Published - rs.Released
		}
	}
	sk := p.sinkSnap.load()
	st.KlinesClosed, st.KlineUpdates, st.KlineMarks, st.KlinesUndelivered = sk.closed, sk.updates, sk.marks, sk.undelivered
	st.Watermark = p.current()
	return st
}

func (p *Pipeline) collect(elapsed time.Duration) {
	st := &p.stats
	st.Elapsed = elapsed
	for _, f := range *p.feeders.Load() {
		st.Sources.Frames += f.stats.Frames
		st.Sources.Bytes += f.stats.Bytes
		st.Sources.Trades += f.stats.Trades
		st.Sources.Commands += f.stats.Commands
		st.Sources.Learned += f.stats.Learned
		st.Sources.Batches += f.stats.Batches
		st.Parse.Add(f.dec.Counters())
	}
	for _, a := range p.aggs {
		st.Shard.Add(a.agg.Counters())
		st.AggWakes += a.wakes
		st.Rings.ConsumerParks += a.waiter.Stats().Parks
		for _, r := range *a.inputs.Load() {
			rs := r.Stats()
			st.Rings.Published += rs.Published
			st.Rings.FullWaits += rs.FullWaits
			st.Rings.ProducerParks += rs.ProducerParks
		}
	}
	if p.sinkW != nil {
		st.Rings.ConsumerParks += p.sinkW.Stats().Parks
	}
}

// Errors is the number of inputs dropped as bad, all reasons together.
func (st *Stats) Errors() uint64 {
	var n uint64
	for _, v := range st.Parse.Errors {
		n += v
	}
	return n
}

// WriteSummary prints the end-of-run summary `klagg replay` shows.
func (st *Stats) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "frames      %d (%d bytes) in %v\n", st.Sources.Frames, st.Sources.Bytes, st.Elapsed.Round(time.Millisecond))
	tps := 0.0
	if st.Elapsed > 0 {
		tps = float64(st.Shard.Trades) / st.Elapsed.Seconds()
	}
	applied := st.Shard.Trades - st.Shard.TooLateTrades
	fmt.Fprintf(w, "trades      %d routed = %d applied (%.0f/s) + %d duplicates + %d too late (dropped, klines flagged late)\n",
		st.Sources.Trades, applied, tps, st.Shard.Duplicates, st.Shard.TooLateTrades)
	fmt.Fprintf(w, "skipped     ")
	sep := ""
	for k := parse.Kind(0); k < parse.NumKinds; k++ {
		if k == parse.KindAggTrade || st.Parse.Frames[k] == 0 {
			continue
		}
		fmt.Fprintf(w, "%s%s=%d", sep, k, st.Parse.Frames[k])
		sep = " "
	}
	if sep == "" {
		fmt.Fprint(w, "none")
	}
	fmt.Fprintf(w, "\nerrors      %d", st.Errors())
	for r := parse.Reason(0); r < parse.NumReasons; r++ {
		if n := st.Parse.Errors[r]; n > 0 {
			fmt.Fprintf(w, " %s=%d", r, n)
		}
	}
	fmt.Fprintf(w, "\nlate        %d corrections of closed klines, %d (trade, interval) pairs too late\n", st.Shard.Late, st.Shard.TooLate)
	fmt.Fprintf(w, "klines      %d closed (%d empty), %d updates, %d marks", st.KlinesClosed, st.Shard.EmptyKlines, st.KlineUpdates, st.KlineMarks)
	if st.Shard.QuietSkipped > 0 {
		fmt.Fprintf(w, ", %d empty ones skipped (--max-empty)", st.Shard.QuietSkipped)
	}
	fmt.Fprintln(w)
	if st.KlinesUndelivered > 0 {
		fmt.Fprintf(w, "UNDELIVERED %d kline events after the sink failed\n", st.KlinesUndelivered)
	}
	fmt.Fprintf(w, "rings       %d trades handed over, %d full-ring waits, %d consumer parks\n", st.Rings.Published, st.Rings.FullWaits, st.Rings.ConsumerParks)
	if st.Shard.Overflows > 0 {
		fmt.Fprintf(w, "OVERFLOW    %d klines have sums beyond 128 bits (flagged)\n", st.Shard.Overflows)
	}
}
