package bench

import (
	"context"
	"errors"
	"io"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/trace"
	"slices"
	"sync/atomic"
	"time"

	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
)

// E2EConfig configures the end-to-end benchmark.
type E2EConfig struct {
	Duration time.Duration // throughput phase; the latency phase runs half as long, after its warm-up
	Symbols  int
	Shards   int
	Rate     float64 // offered frames per second in the latency phase
	DataRate float64 // aggTrades per second of market time in the synthetic feed (how fast klines close)
	Frames   int     // synthetic frames generated once and replayed through fresh pipelines; 0 = 2,000,000
	Naive    int     // frames given to the naive baseline; 0 = 1,000,000
	Market   string
	Seed     int64
	YieldFor time.Duration // ring waiters' yield time before parking; < 0 keeps the pipeline default
	// FixedYield makes the ring waiters yield for YieldFor on every wait, as
	// before the waiter became adaptive (ring.Config.FixedYield), for comparison.
	FixedYield bool
	Pin        bool // lock the source goroutine to an OS thread
	// Warmup is how long the latency phase offers frames before it follows
	// any: the pipeline starts, every symbol's kline state is allocated and the
	// caches fill. 0 means a fifth of the measured time, at most 1 s.
	Warmup time.Duration
	// Trace, when set, receives a runtime execution trace of the latency
	// phase's measured part (go tool trace): where a slow sample waited.
	Trace io.Writer
}

// DefaultE2EConfig is what `klagg bench` runs without flags.
func DefaultE2EConfig() E2EConfig {
	return E2EConfig{Duration: 10 * time.Second, Symbols: 500, Shards: 2, Rate: 100_000, Market: "futures", Seed: 1, YieldFor: -1, DataRate: 20_000}
}

// E2EResult is printed as JSON by `klagg bench --json`.
type E2EResult struct {
	TradesPerSec        float64 `json:"trades_per_sec"`
	NaiveTradesPerSec   float64 `json:"naive_trades_per_sec"`
	SpeedupVsNaive      float64 `json:"speedup_vs_naive"`
	AllocsPerTrade      float64 `json:"allocs_per_trade"`
	AllocsPerTradeTotal float64 `json:"allocs_per_trade_incl_setup"`
	P50LatencyUS        float64 `json:"p50_latency_us"`
	P99LatencyUS        float64 `json:"p99_latency_us"`
	P999LatencyUS       float64 `json:"p999_latency_us"`
	MaxLatencyUS        float64 `json:"max_latency_us"`
	LatencySamples      int     `json:"latency_samples"`
	// What else happened in the latency phase, so a bad tail can be told
	// apart from a disturbed run: garbage collections and allocations per
	// frame while it measured, consumer parks (warm-up included), how far
	// behind schedule frames were handed over (p99 and max) and how often the
	// source, kept from running, dropped the slots it had missed.
	LatencyGCCycles       uint32  `json:"latency_gc_cycles"`
	LatencyConsumerParks  uint64  `json:"latency_consumer_parks"`
	LatencyAllocsPerFrame float64 `json:"latency_allocs_per_frame"`
	PacingLagP99US        float64 `json:"pacing_lag_p99_us"`
	PacingLagMaxUS        float64 `json:"pacing_lag_max_us"`
	PacingSlips           int     `json:"pacing_slips"`      // times the source fell over 50 us (2 periods at low rates) behind and dropped the missed slots
	PacingSlippedMS       float64 `json:"pacing_slipped_ms"` // time slots dropped in all
	WarmupSeconds         float64 `json:"warmup_seconds"`
	OfferedRate           float64 `json:"offered_rate"`
	AchievedRate          float64 `json:"achieved_rate"`
	Trades                uint64  `json:"trades"`
	Passes                int     `json:"passes"`
	NaiveTrades           int     `json:"naive_trades"`
	Symbols               int     `json:"symbols"`
	Shards                int     `json:"shards"`
	Intervals             int     `json:"intervals"`
	KlinesClosed          uint64  `json:"klines_closed"`
	KlineUpdates          uint64  `json:"kline_updates"`
	Decoder               string  `json:"decoder"`
	YieldForUS            float64 `json:"yield_for_us"`
	FixedYield            bool    `json:"fixed_yield"`
	GOMAXPROCS            int     `json:"gomaxprocs"`
	GoVersion             string  `json:"go_version"`
}

// frameSet holds the synthetic feed compactly: one pointer-free buffer and the
// end of each frame in it. A [][]byte of two million frames is two million
// pointers the garbage collector scans at every cycle, in the middle of the
// phases it would disturb; this is two objects it never looks into.
type frameSet struct {
	buf  []byte
	ends []int
}

// newFrameSet generates n frames.
func newFrameSet(gen *fakex.Generator, n int) *frameSet {
	s := &frameSet{buf: make([]byte, 0, n*230), ends: make([]int, n)}
	for i := range n {
		s.buf = gen.Append(s.buf)
		s.ends[i] = len(s.buf)
	}
	return s
}

func (s *frameSet) Len() int { return len(s.ends) }

// Frame returns frame i, which the caller must not modify.
func (s *frameSet) Frame(i int) []byte {
	start := 0
	if i > 0 {
		start = s.ends[i-1]
	}
	return s.buf[start:s.ends[i]:s.ends[i]]
}

// RunE2E runs the throughput phase, the naive baseline on the same frames and the
// latency phase, all in this process, one after the other.
func RunE2E(ctx context.Context, cfg E2EConfig) (*E2EResult, error) {
	if cfg.Frames <= 0 {
		cfg.Frames = 2_000_000
	}
	if cfg.Naive <= 0 {
		cfg.Naive = 1_000_000
	}
	gc := fakex.DefaultGenConfig()
	gc.Market, gc.Symbols, gc.Seed, gc.Rate = cfg.Market, cfg.Symbols, cfg.Seed, cfg.DataRate
	gen := fakex.NewGenerator(gc)
	frames := newFrameSet(gen, cfg.Frames)
	intervals := shard.BinanceIntervals(cfg.Market == "spot")
	res := &E2EResult{
		Symbols: cfg.Symbols, Shards: cfg.Shards, Intervals: len(intervals), OfferedRate: cfg.Rate,
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), Decoder: "fast",
	}
	pcfg := pipeline.DefaultConfig()
	pcfg.Shards = cfg.Shards
	pcfg.Shard.Intervals = intervals
	pcfg.Updates = true
	if cfg.YieldFor >= 0 {
		pcfg.Ring.YieldFor = cfg.YieldFor
	}
	pcfg.Ring.FixedYield = cfg.FixedYield
	pcfg.PinSources = cfg.Pin
	res.YieldForUS = float64(pcfg.Ring.YieldFor) / 1e3
	res.FixedYield = pcfg.Ring.FixedYield

	// Throughput: fresh pipelines over the same frames until the duration is spent.
	var elapsed time.Duration
	var steadyAllocs, steadyTrades, totalAllocs uint64
	for elapsed < cfg.Duration || res.Passes == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		table := parse.NewSymbolTable()
		table.Add(gen.Symbols()...)
		src := &measured{frames: frames, warm: frames.Len() / 5}
		sink := &countSink{}
		p, err := pipeline.New(pcfg, table, []pipeline.Source{src}, sink, nil)
		if err != nil {
			return nil, err
		}
		before := mallocs()
		if err := p.Run(ctx); err != nil {
			return nil, err
		}
		totalAllocs += mallocs() - before
		st := p.Stats()
		elapsed += st.Elapsed
		res.Trades += st.Shard.Trades
		res.KlinesClosed += st.KlinesClosed
		res.KlineUpdates += st.KlineUpdates
		steadyAllocs += src.endAllocs - src.warmAllocs
		steadyTrades += uint64(frames.Len() - src.warm)
		res.Passes++
	}
	res.TradesPerSec = float64(res.Trades) / elapsed.Seconds()
	res.AllocsPerTrade = float64(steadyAllocs) / float64(steadyTrades)
	res.AllocsPerTradeTotal = float64(totalAllocs) / float64(res.Trades)

	// The naive baseline on (a prefix of) the same frames.
	millis := make([]int64, 0, len(intervals))
	for _, iv := range intervals {
		if iv.Millis > 0 {
			millis = append(millis, iv.Millis)
		}
	}
	nr := runNaiveOn(frames, min(cfg.Naive, frames.Len()), millis)
	res.NaiveTrades = nr.Trades
	res.NaiveTradesPerSec = float64(nr.Trades) / nr.Elapsed.Seconds()
	res.SpeedupVsNaive = res.TradesPerSec / res.NaiveTradesPerSec

	if err := latency(ctx, cfg, pcfg, gen.Symbols(), frames, res); err != nil {
		return nil, err
	}
	return res, nil
}

// runNaiveOn runs the naive baseline on the first n frames, through a
// [][]byte view that is garbage once it returns.
func runNaiveOn(frames *frameSet, n int, millis []int64) NaiveResult {
	view := make([][]byte, n)
	for i := range view {
		view[i] = frames.Frame(i)
	}
	return RunNaive(view, millis)
}

func mallocs() uint64 {
	// runtime.MemStats.Mallocs without stopping the world: the heap
	// allocations and the tiny ones, which the first metric leaves out.
	return readMetric("/gc/heap/allocs:objects") + readMetric("/gc/heap/tiny/allocs:objects")
}

// measured hands over frames like pipeline.Frames and reads the allocation count once
// warm (every symbol seen, state allocated) and at the end, so the difference is the
// steady state of every stage running concurrently.
type measured struct {
	frames                *frameSet
	warm                  int
	warmAllocs, endAllocs uint64
}

func (s *measured) Run(ctx context.Context, f *pipeline.Feeder) error {
	for i := range s.frames.Len() {
		if i == s.warm {
			f.Flush()
			s.warmAllocs = mallocs()
		}
		f.Frame(s.frames.Frame(i))
		if (i+1)%4096 == 0 {
			f.Flush()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	f.Flush()
	s.endAllocs = mallocs()
	return nil
}

// countSink counts what reaches it.
type countSink struct{ closed, updates uint64 }

func (s *countSink) Kline(k *shard.Kline) error {
	if k.Closed {
		s.closed++
	} else {
		s.updates++
	}
	return nil
}
func (s *countSink) Close() error { return nil }

// probe follows one frame per symbol at a time from handoff to the sink.
type probe struct {
	agg []atomic.Int64 // aggTrade id being followed, 0 when none
	t0  []atomic.Int64 // nanotime of handoff
}

// latency runs the paced phase: frames handed to the source one at a time at
// cfg.Rate, each on its own schedule; after the warm-up one frame per symbol at
// a time is followed from its handoff until its kline update reaches the sink.
// Everything the phase records into is allocated and the heap collected
// before it starts, so the benchmark makes no garbage of its own while klagg
// is measured: a collection that happens anyway is reported.
func latency(ctx context.Context, cfg E2EConfig, pcfg pipeline.Config, symbols []string, frames *frameSet, res *E2EResult) error {
	warm := cfg.Warmup
	dur := cfg.Duration / 2
	if warm <= 0 {
		warm = min(dur/5, time.Second)
	}
	// Frames the phase can use: the schedule's, plus 5 % headroom.
	n := min(frames.Len(), int(cfg.Rate*(warm+dur).Seconds()*1.05)+1)
	table := parse.NewSymbolTable()
	table.Add(symbols...)
	syms := table.Load()
	metas := make([]frameMeta, n)
	var t parse.Trade
	for i := range metas {
		if k, err := parse.DecodeFast(&t, frames.Frame(i), syms); err == nil && k == parse.KindAggTrade {
			metas[i] = frameMeta{t.Symbol, t.AggID}
		}
	}
	pr := &probe{agg: make([]atomic.Int64, len(symbols)), t0: make([]atomic.Int64, len(symbols))}
	sink := &latencySink{probe: pr, lat: make([]int64, 0, n)}
	src := &paced{frames: frames, n: n, metas: metas, rate: cfg.Rate, warm: warm, dur: dur, probe: pr, trace: cfg.Trace, lag: make([]int64, 0, n)}
	p, err := pipeline.New(pcfg, table, []pipeline.Source{src}, sink, nil)
	if err != nil {
		return err
	}
	// The throughput passes' and the naive baseline's garbage, collected and
	// its pages returned to the OS now: left to the background scavenger,
	// they were returned during the measurement, in chunks that held a P for
	// a millisecond each (seen in --trace).
	debug.FreeOSMemory()
	if err := p.Run(ctx); err != nil {
		return err
	}
	if sink.overflow {
		return errors.New("cannot measure latency: the samples outgrew their buffer")
	}
	res.WarmupSeconds = warm.Seconds()
	if src.took > 0 {
		res.AchievedRate = float64(src.sent) / src.took.Seconds()
	}
	res.LatencyGCCycles = src.gcCycles
	res.LatencyConsumerParks = p.Stats().Rings.ConsumerParks
	if src.sent > 0 {
		res.LatencyAllocsPerFrame = float64(src.allocs) / float64(src.sent)
	}
	lat := sink.lat
	res.LatencySamples = len(lat)
	if len(lat) == 0 {
		return errors.New("cannot measure latency: no samples")
	}
	res.P50LatencyUS, res.P99LatencyUS, res.P999LatencyUS, res.MaxLatencyUS = quantileUS(lat, 0.50), quantileUS(lat, 0.99), quantileUS(lat, 0.999), quantileUS(lat, 1)
	res.PacingSlips, res.PacingSlippedMS = src.slips, float64(src.slipped)/1e6
	if len(src.lag) > 0 {
		res.PacingLagP99US, res.PacingLagMaxUS = quantileUS(src.lag, 0.99), quantileUS(src.lag, 1)
	}
	return nil
}

// quantileUS returns the q quantile of v (nanoseconds; sorted in place) in microseconds.
func quantileUS(v []int64, q float64) float64 {
	if !slices.IsSorted(v) {
		slices.Sort(v)
	}
	return float64(v[max(int(math.Ceil(q*float64(len(v))))-1, 0)]) / 1e3
}

type frameMeta struct {
	symbol uint32
	agg    int64
}

type latencySink struct {
	probe    *probe
	lat      []int64
	overflow bool
}

func (s *latencySink) Kline(k *shard.Kline) error {
	if k.Closed || int(k.Symbol) >= len(s.probe.agg) {
		return nil
	}
	want := s.probe.agg[k.Symbol].Load()
	if want != 0 && k.LastAggID >= want && s.probe.agg[k.Symbol].CompareAndSwap(want, 0) {
		if len(s.lat) == cap(s.lat) {
			s.overflow = true // never: at most one sample per frame handed over
			return nil
		}
		s.lat = append(s.lat, nanotime()-s.probe.t0[k.Symbol].Load())
	}
	return nil
}
func (s *latencySink) Close() error { return nil }

// paced hands frames to the source one at a time on a fixed schedule, one
// every 1/rate, with a Flush after each, as a socket delivering one message per
// read would: no batches of due frames, whose first frame would wait for the
// others' decoding. Between frames it yields rather than sleeps: the next frame
// is due within microseconds, below what a timer resolves.
//
// When its goroutine was kept from running and it finds itself more than
// slipAfter behind, it does not catch up with a burst of the frames it missed
// (their latency would measure the catching up, not klagg): it drops those
// time slots, counts a slip and goes on from now. How late each frame was
// handed over (lag) and the slips are reported, so a disturbed run shows, and
// the achieved rate says what was really offered.
type paced struct {
	frames    *frameSet
	n         int
	metas     []frameMeta
	rate      float64
	warm, dur time.Duration
	probe     *probe
	trace     io.Writer

	sent     int           // frames handed over while measuring
	took     time.Duration // the time they took
	lag      []int64       // how late each of them was handed over, ns
	slips    int           // times the schedule was dropped while measuring
	slipped  time.Duration // time slots dropped
	gcCycles uint32        // collections while measuring
	allocs   uint64        // allocations while measuring
}

func (s *paced) Run(ctx context.Context, f *pipeline.Feeder) error {
	var ms runtime.MemStats
	period := 1e9 / s.rate
	slipAfter := max(50e3, 2*period) // ns
	start := nanotime()
	measureFrom := start + int64(s.warm)
	end := measureFrom + int64(s.dur)
	due := float64(start) // when frame i is due
	measuring := false
	first := 0
	i := 0
	for ; i < s.n; i, due = i+1, due+period {
		now := nanotime()
		for float64(now) < due {
			runtime.Gosched()
			now = nanotime()
		}
		if now >= end || ctx.Err() != nil {
			break
		}
		if !measuring && now >= measureFrom {
			runtime.ReadMemStats(&ms) // once, between frames: it stops the world
			s.gcCycles, s.allocs = ms.NumGC, ms.Mallocs
			if s.trace != nil {
				if err := trace.Start(s.trace); err != nil {
					return err
				}
				defer trace.Stop()
			}
			now = nanotime()
			measuring, first, measureFrom, due = true, i, now, float64(now)
		}
		late := float64(now) - due
		if late > slipAfter {
			if measuring {
				s.slips++
				s.slipped += time.Duration(late)
			}
			due = float64(now)
		}
		m := s.metas[i]
		if measuring {
			s.lag = append(s.lag, int64(late)) // capacity n: never grows
			if m.agg != 0 && s.probe.agg[m.symbol].Load() == 0 {
				s.probe.t0[m.symbol].Store(nanotime())
				s.probe.agg[m.symbol].Store(m.agg)
			}
		}
		f.Frame(s.frames.Frame(i))
		f.Flush()
	}
	if measuring {
		s.sent, s.took = i-first, time.Duration(nanotime()-measureFrom)
		runtime.ReadMemStats(&ms)
		s.gcCycles, s.allocs = ms.NumGC-s.gcCycles, ms.Mallocs-s.allocs
	}
	return nil
}

var epoch = time.Now()

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }
