package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
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
	Duration time.Duration // throughput phase; the latency phase runs half as long
	Symbols  int
	Shards   int
	Rate     float64 // offered frames per second in the latency phase
	DataRate float64 // aggTrades per second of market time in the synthetic feed (how fast klines close)
	Frames   int     // synthetic frames generated once and replayed through fresh pipelines; 0 = 2,000,000
	Naive    int     // frames given to the naive baseline; 0 = 1,000,000
	Market   string
	Seed     int64
	YieldFor time.Duration // ring waiters' yield time before parking; < 0 keeps the pipeline default
	Pin      bool          // lock the source goroutine to an OS thread
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
	MaxLatencyUS        float64 `json:"max_latency_us"`
	LatencySamples      int     `json:"latency_samples"`
	OfferedRate         float64 `json:"offered_rate"`
	AchievedRate        float64 `json:"achieved_rate"`
	Trades              uint64  `json:"trades"`
	Passes              int     `json:"passes"`
	NaiveTrades         int     `json:"naive_trades"`
	Symbols             int     `json:"symbols"`
	Shards              int     `json:"shards"`
	Intervals           int     `json:"intervals"`
	KlinesClosed        uint64  `json:"klines_closed"`
	KlineUpdates        uint64  `json:"kline_updates"`
	Decoder             string  `json:"decoder"`
	GOMAXPROCS          int     `json:"gomaxprocs"`
	GoVersion           string  `json:"go_version"`
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
	frames := gen.Frames(cfg.Frames)
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
	pcfg.PinSources = cfg.Pin

	// Throughput: fresh pipelines over the same frames until the duration is spent.
	var elapsed time.Duration
	var steadyAllocs, steadyTrades, totalAllocs uint64
	for elapsed < cfg.Duration || res.Passes == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		table := parse.NewSymbolTable()
		table.Add(gen.Symbols()...)
		src := &measured{frames: frames, warm: len(frames) / 5}
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
		steadyTrades += uint64(len(frames) - src.warm)
		res.Passes++
	}
	res.TradesPerSec = float64(res.Trades) / elapsed.Seconds()
	res.AllocsPerTrade = float64(steadyAllocs) / float64(steadyTrades)
	res.AllocsPerTradeTotal = float64(totalAllocs) / float64(res.Trades)

	// The naive baseline on (a prefix of) the same frames.
	n := min(cfg.Naive, len(frames))
	millis := make([]int64, 0, len(intervals))
	for _, iv := range intervals {
		if iv.Millis > 0 {
			millis = append(millis, iv.Millis)
		}
	}
	nr := RunNaive(frames[:n], millis)
	res.NaiveTrades = nr.Trades
	res.NaiveTradesPerSec = float64(nr.Trades) / nr.Elapsed.Seconds()
	res.SpeedupVsNaive = res.TradesPerSec / res.NaiveTradesPerSec

	if err := latency(ctx, cfg, pcfg, gen.Symbols(), frames, res); err != nil {
		return nil, err
	}
	return res, nil
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// measured hands over frames like pipeline.Frames and reads the allocation count once
// warm (every symbol seen, state allocated) and at the end, so the difference is the
// steady state of every stage running concurrently.
type measured struct {
	frames                [][]byte
	warm                  int
	warmAllocs, endAllocs uint64
}

func (s *measured) Run(ctx context.Context, f *pipeline.Feeder) error {
	for i, frame := range s.frames {
		if i == s.warm {
			f.Flush()
			s.warmAllocs = mallocs()
		}
		f.Frame(frame)
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

// latency runs the paced phase: frames handed to the source at cfg.Rate, one followed
// per symbol at a time until its kline update reaches the sink.
func latency(ctx context.Context, cfg E2EConfig, pcfg pipeline.Config, symbols []string, frames [][]byte, res *E2EResult) error {
	table := parse.NewSymbolTable()
	table.Add(symbols...)
	syms := table.Load()
	type meta struct {
		symbol uint32
		agg    int64
	}
	metas := make([]meta, len(frames))
	var t parse.Trade
	for i, fr := range frames {
		if k, err := parse.DecodeFast(&t, fr, syms); err == nil && k == parse.KindAggTrade {
			metas[i] = meta{t.Symbol, t.AggID}
		}
	}
	pr := &probe{agg: make([]atomic.Int64, len(symbols)), t0: make([]atomic.Int64, len(symbols))}
	sink := &latencySink{probe: pr, lat: make([]int64, 0, 1<<16)}
	dur := cfg.Duration / 2
	src := &paced{frames: frames, rate: cfg.Rate, dur: dur, probe: pr, meta: func(i int) (uint32, int64) { return metas[i].symbol, metas[i].agg }}
	p, err := pipeline.New(pcfg, table, []pipeline.Source{src}, sink, nil)
	if err != nil {
		return err
	}
	if err := p.Run(ctx); err != nil {
		return err
	}
	res.AchievedRate = float64(src.sent) / src.took.Seconds()
	lat := sink.lat
	res.LatencySamples = len(lat)
	if len(lat) == 0 {
		return fmt.Errorf("latency phase recorded no samples")
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(math.Ceil(p*float64(len(lat))))-1]) / 1e3 }
	res.P50LatencyUS, res.P99LatencyUS, res.MaxLatencyUS = q(0.50), q(0.99), q(1)
	return nil
}

type latencySink struct {
	probe *probe
	lat   []int64
}

func (s *latencySink) Kline(k *shard.Kline) error {
	if k.Closed || int(k.Symbol) >= len(s.probe.agg) {
		return nil
	}
	want := s.probe.agg[k.Symbol].Load()
	if want != 0 && k.LastAggID >= want && s.probe.agg[k.Symbol].CompareAndSwap(want, 0) {
		s.lat = append(s.lat, nanotime()-s.probe.t0[k.Symbol].Load())
	}
	return nil
}
func (s *latencySink) Close() error { return nil }

// paced hands frames to the source at a fixed rate for a fixed time.
type paced struct {
	frames [][]byte
	rate   float64
	dur    time.Duration
	probe  *probe
	meta   func(i int) (uint32, int64)
	sent   int
	took   time.Duration
}

func (s *paced) Run(ctx context.Context, f *pipeline.Feeder) error {
	start := nanotime()
	i := 0
	for i < len(s.frames) {
		now := nanotime()
		if time.Duration(now-start) >= s.dur || ctx.Err() != nil {
			break
		}
		due := min(int(float64(now-start)*s.rate/1e9), len(s.frames))
		if due <= i {
			// Frames are due every 1/rate: yield rather than sleep, so they are
			// handed over one by one as a socket would deliver them, not in the
			// bursts a coarse sleep would make.
			runtime.Gosched()
			continue
		}
		for ; i < due; i++ {
			sym, agg := s.meta(i)
			if agg != 0 && s.probe.agg[sym].Load() == 0 {
				s.probe.t0[sym].Store(nanotime())
				s.probe.agg[sym].Store(agg)
			}
			f.Frame(s.frames[i])
		}
		f.Flush()
	}
	s.sent = i
	s.took = time.Duration(nanotime() - start)
	return nil
}

var epoch = time.Now()

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }
