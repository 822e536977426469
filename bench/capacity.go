package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"go.uber.org/zap"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/feed"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
)

// CapacityConfig configures the capacity test: fakex and the daemon in one process,
// talking over loopback WebSockets, at rising offered rates.
type CapacityConfig struct {
	Symbols  int
	Conns    int
	Shards   int
	Duration time.Duration // all steps together (a step offers at least CloseWarmup+Grace+CloseMargin with AlignCloses)
	Rates    []float64     // offered trades per second, one step each, rising
	SLO      time.Duration // p99 latency a step must stay under
	Market   string
	// Intervals, when not empty, replaces the daemon's: all of Binance's for
	// the Market (futures 1m..1M, spot 1s..1M), as `klagg run` has them.
	Intervals []shard.Interval
	// AlignCloses starts each step so that a base-interval period ends
	// CloseWarmup after fakex's first trade, and offers trades until that
	// period's klines have closed by watermark too (Grace + CloseMargin later):
	// every step then measures close delays. The step waits for that moment,
	// up to one base interval (a minute with futures' 1m base) before it
	// starts. Without it the steps run back to back and close delays are
	// measured only for the periods that happen to end inside a step.
	AlignCloses bool
	Log         *zap.Logger
}

// DefaultCapacityConfig is what `klagg capacity` runs without flags.
func DefaultCapacityConfig() CapacityConfig {
	return CapacityConfig{
		Symbols: 1000, Conns: 4, Shards: 2, Duration: 20 * time.Second, Market: "futures",
		Rates:       []float64{50_000, 100_000, 200_000, 400_000, 700_000, 1_000_000, 1_400_000, 2_000_000},
		SLO:         50 * time.Millisecond,
		AlignCloses: true,
	}
}

const (
	// CloseWarmup is how long fakex trades before the period end AlignCloses
	// puts in each step: every symbol has traded, so its kline is open, and
	// the daemon has left its start-up behind. Periods ending less than
	// CloseWarmup/2 after fakex's first trade are not counted.
	CloseWarmup = time.Second
	// CloseMargin is how long after Grace a period's quiet klines get to
	// reach the sink before the step may end: a period counts only if its end
	// is at least Grace + CloseMargin before the step stopped.
	CloseMargin = 500 * time.Millisecond
)

// CapacityStep is one offered rate.
type CapacityStep struct {
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"` // trades applied per second of the step
	ProducedRate float64 `json:"produced_rate"` // what fakex managed to send (it shares the cores)
	OfferSeconds float64 `json:"offer_seconds"` // how long fakex offered trades
	Produced     int64   `json:"produced"`
	Applied      int64   `json:"applied"`
	Lost         int64   `json:"lost"`
	// AllocsPerTrade is the heap objects the process allocated in the step
	// (fakex's included, with the daemon's start and stop) per trade applied:
	// the live path allocates nothing per trade, so this stays near zero.
	AllocsPerTrade float64 `json:"allocs_per_trade"`
	Reconnects     uint64  `json:"reconnects"`
	GapsFilled     uint64  `json:"gaps_filled"`
	P50LatencyUS   float64 `json:"p50_latency_us"`
	P99LatencyUS   float64 `json:"p99_latency_us"`
	Samples        int     `json:"latency_samples"`
	// P99LatencyWarmUS is the p99 of the samples sent CloseWarmup or more
	// after fakex's first sample, once every symbol's state is allocated:
	// the steady state, shown beside the whole step's (which judges).
	P99LatencyWarmUS float64 `json:"p99_latency_us_warm"`
	SlowConns        int64   `json:"fakex_slow_conns"`
	Sustained        bool    `json:"sustained"`
	FailureReason    string  `json:"failure,omitempty"`

	// Close delays of the klines whose period ended inside the step's close
	// window (see CloseDelays), by base-interval kline: Active had trades,
	// Quiet is empty; Parents are the longer intervals' klines (folded from the
	// base, closed the moment their last base period does), active and quiet
	// together.
	CloseActive  CloseDelays `json:"close_active"`
	CloseQuiet   CloseDelays `json:"close_quiet"`
	CloseParents CloseDelays `json:"close_parents"`
	// ClosePeriods is the number of base period ends in the close window;
	// CloseWindowMS its length in exchange time.
	ClosePeriods  int     `json:"close_periods"`
	CloseWindowMS int64   `json:"close_window_ms"`
	PromptCloses  uint64  `json:"prompt_closes"` // base klines closed by a later trade of their symbol (shard counter, whole step)
	KlinesClosed  uint64  `json:"klines_closed"` // closed klines the sink received (whole step)
	KlineUpdates  uint64  `json:"kline_updates"` // running kline updates the sink received (whole step)
	UnclosedBase  int     `json:"klines_unclosed"`
	ClockOffsetMS int64   `json:"feed_clock_offset_ms"` // the daemon's clock - fakex's, at the end of the step
	Memory        StepMem `json:"memory"`
}

// CloseDelays summarises close delays: for each closed kline, the exchange's
// clock (fakex's, which the daemon's clock follows by reading /time) when the
// kline reached the pipeline's sink, minus the end of its period (CloseTime+1),
// in milliseconds. Corrections are not counted. The clocks read whole
// milliseconds, so a delay is exact to about 1 ms. All zero when Klines is 0.
type CloseDelays struct {
	Klines int     `json:"klines"`
	P50MS  float64 `json:"close_delay_p50_ms"`
	P99MS  float64 `json:"close_delay_p99_ms"`
	MaxMS  float64 `json:"close_delay_max_ms"`
}

// StepMem is the process's memory in one step. fakex shares the process, so
// the RSS and the Go heap include it (its per-symbol trade history and its
// connection queues); DaemonHeapMB is the daemon's part of the heap alone.
type StepMem struct {
	// RSSPeakMB is VmHWM at the end of the step, the peak having been reset
	// (/proc/self/clear_refs) when the step started: the previous steps'
	// garbage is collected then but stays resident, so a step's peak is at
	// least what they left. RSSEndMB is VmRSS once the daemon has stopped,
	// before anything is freed.
	RSSPeakMB float64 `json:"rss_mb_peak"`
	RSSEndMB  float64 `json:"rss_mb_end"`
	// RSSPeakSource says where RSSPeakMB comes from: "VmHWM" (reset for the
	// step), "VmHWM-process" (the reset failed: the whole run's peak so far),
	// "" (no /proc: no RSS figures).
	RSSPeakSource string `json:"rss_peak_source"`
	// HeapPeakMB is the largest Go heap in use (live and not yet collected
	// objects, fakex's and the daemon's) seen by sampling every 100 ms.
	HeapPeakMB float64 `json:"go_heap_mb_peak"`
	// DaemonHeapMB is the live heap the daemon (feed, pipeline and their
	// state: kline state of every symbol and interval, correction history,
	// rings) held at the end of the step: the live heap after a collection,
	// minus the live heap after the daemon was dropped and collected again.
	// -1 when the daemon could not be collected (something still referenced
	// it), so the difference would be wrong.
	DaemonHeapMB float64 `json:"daemon_heap_mb"`
}

// CapacityResult is printed as JSON by `klagg capacity --json`.
type CapacityResult struct {
	MaxSustainedTradesPerSec float64 `json:"max_sustained_trades_per_sec"`
	P99LatencyUSAtMax        float64 `json:"p99_latency_us_at_max"`
	LostTrades               int64   `json:"lost_trades"`
	SLOUS                    float64 `json:"slo_p99_us"`
	// Close delays, memory and the daemon's heap at the largest sustained
	// step; RSSPeakMB is the largest step peak of the run.
	CloseActiveAtMax  CloseDelays    `json:"close_active_at_max"`
	CloseQuietAtMax   CloseDelays    `json:"close_quiet_at_max"`
	RSSPeakMB         float64        `json:"rss_mb_peak"`
	RSSEndMBAtMax     float64        `json:"rss_mb_end_at_max"`
	DaemonHeapMBAtMax float64        `json:"daemon_heap_mb_at_max"`
	Symbols           int            `json:"symbols"`
	Conns             int            `json:"conns"`
	Shards            int            `json:"shards"`
	Intervals         int            `json:"intervals"`
	BaseInterval      string         `json:"base_interval"`
	PromptClose       bool           `json:"prompt_close"`
	Updates           bool           `json:"updates"`
	ParentUpdatesMS   float64        `json:"parent_updates_ms"`
	GraceMS           int64          `json:"grace_ms"`
	AlignCloses       bool           `json:"align_closes"`
	GOMAXPROCS        int            `json:"gomaxprocs"`
	Steps             []CapacityStep `json:"steps"`
}

// RunCapacity raises the offered rate step by step until a step loses a trade,
// misses the latency SLO or cannot keep up; the last step that did none of these
// is the capacity. Close delays and memory are reported, not judged.
func RunCapacity(ctx context.Context, cfg CapacityConfig) (*CapacityResult, error) {
	switch {
	case len(cfg.Rates) == 0:
		return nil, errors.New("cannot run the capacity test: no rates")
	case cfg.Symbols < 1 || cfg.Conns < 1 || cfg.Shards < 1:
		return nil, fmt.Errorf("cannot run the capacity test: want at least 1 symbol, connection and shard, got %d, %d, %d", cfg.Symbols, cfg.Conns, cfg.Shards)
	}
	market, err := exchange.ParseMarket(cfg.Market)
	if err != nil {
		return nil, fmt.Errorf("cannot run the capacity test: %w", err)
	}
	pcfg, _ := daemonConfig(cfg, market)
	base := pcfg.Shard.Intervals[baseInterval(pcfg.Shard.Intervals)]
	res := &CapacityResult{
		Symbols: cfg.Symbols, Conns: cfg.Conns, Shards: cfg.Shards, SLOUS: float64(cfg.SLO.Microseconds()),
		GOMAXPROCS: runtime.GOMAXPROCS(0), Intervals: len(pcfg.Shard.Intervals), BaseInterval: base.Name,
		PromptClose: pcfg.Shard.PromptClose, Updates: pcfg.Updates, ParentUpdatesMS: float64(pcfg.ParentUpdates) / 1e6,
		GraceMS: pcfg.Shard.Grace, AlignCloses: cfg.AlignCloses,
	}
	step := cfg.Duration / time.Duration(max(1, len(cfg.Rates)))
	for _, rate := range cfg.Rates {
		st, err := capacityStep(ctx, cfg, market, rate, step)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, st)
		res.LostTrades += st.Lost
		res.RSSPeakMB = max(res.RSSPeakMB, st.Memory.RSSPeakMB)
		if !st.Sustained {
			break
		}
		res.MaxSustainedTradesPerSec = st.AchievedRate
		res.P99LatencyUSAtMax = st.P99LatencyUS
		res.CloseActiveAtMax, res.CloseQuietAtMax = st.CloseActive, st.CloseQuiet
		res.RSSEndMBAtMax, res.DaemonHeapMBAtMax = st.Memory.RSSEndMB, st.Memory.DaemonHeapMB
	}
	return res, nil
}

// daemonConfig configures the feed and the pipeline as `klagg run` does
// (cmd/klagg/run.go): Binance's intervals for the market, a 2 s grace, a
// correction history covering the feed's MaxHold, PromptClose, running
// updates (the daemon serves and stores open klines) with the parents' every
// ParentUpdates, and the feed's clock. Only the endpoints, the connections and
// the clock sync differ (see capacityStep).
func daemonConfig(cfg CapacityConfig, market exchange.Market) (pipeline.Config, feed.Config) {
	lcfg := feed.DefaultConfig(market)
	pcfg := pipeline.DefaultConfig()
	pcfg.Shards = cfg.Shards
	pcfg.Shard.Intervals = shard.BinanceIntervals(market == exchange.Spot)
	if len(cfg.Intervals) > 0 {
		pcfg.Shard.Intervals = slices.Clone(cfg.Intervals)
	}
	pcfg.Shard.Lateness = (lcfg.MaxHold + time.Minute).Milliseconds()
	pcfg.Shard.PromptClose = true
	pcfg.Updates = true
	return pcfg, lcfg
}

// baseInterval returns the index of the shortest interval: the base the
// shard feeds with trades for Binance's sets (1m futures, 1s spot) and any
// set whose shortest interval tiles the others.
func baseInterval(ivs []shard.Interval) int {
	best := 0
	for i, iv := range ivs {
		if intervalLength(iv) < intervalLength(ivs[best]) {
			best = i
		}
	}
	return best
}

func intervalLength(iv shard.Interval) int64 {
	if iv.Months > 0 {
		return int64(iv.Months) * 28 * 24 * 3600 * 1000
	}
	return iv.Millis
}

// boundaryFrom returns the first period start of iv at or after t (Unix ms).
func boundaryFrom(iv shard.Interval, t int64) int64 {
	if open := iv.OpenTime(t); open < t {
		return iv.NextOpen(open)
	}
	return t
}

func capacityStep(outer context.Context, cfg CapacityConfig, market exchange.Market, rate float64, dur time.Duration) (CapacityStep, error) {
	st := CapacityStep{OfferedRate: rate}
	ctx, cancel := context.WithCancel(outer)
	defer cancel()
	pcfg, lcfg := daemonConfig(cfg, market)
	bi := baseInterval(pcfg.Shard.Intervals)
	base := pcfg.Shard.Intervals[bi]
	grace := time.Duration(pcfg.Shard.Grace) * time.Millisecond

	// The step starts from the live heap only, with its RSS peak reset, so
	// its memory is its own and not the previous steps' garbage.
	mem := watchMemory()
	defer mem.stop()

	// fakex's data time starts at the wall clock when it is created and
	// advances with the trades it sends, so starting it CloseWarmup before a
	// base boundary puts that boundary CloseWarmup into the trading.
	offer := dur
	if cfg.AlignCloses {
		now := time.Now().UnixMilli()
		b := boundaryFrom(base, now+CloseWarmup.Milliseconds())
		if err := exchange.Sleep(ctx, time.Duration(b-now)*time.Millisecond-CloseWarmup); err != nil {
			return st, err
		}
		offer = max(dur, CloseWarmup+grace+CloseMargin)
	}

	// The daemon's symbol table is filled from fakex's exchangeInfo; samples name
	// symbols, looked up when the producer reports them.
	table := parse.NewSymbolTable()
	pr := &probe{agg: make([]atomic.Int64, cfg.Symbols+16), t0: make([]atomic.Int64, cfg.Symbols+16)}
	fcfg := fakex.DefaultConfig()
	fcfg.Market, fcfg.Symbols, fcfg.Rate, fcfg.WaitConns = cfg.Market, cfg.Symbols, rate, cfg.Conns
	fcfg.SampleEvery = max(1, int(rate/5000))
	var firstSample atomic.Int64
	fcfg.Sample = func(symbol string, aggID int64) {
		if firstSample.Load() == 0 {
			firstSample.Store(nanotime())
		}
		i, ok := table.Load().Lookup([]byte(symbol))
		if !ok || int(i) >= len(pr.agg) || pr.agg[i].Load() != 0 {
			return
		}
		pr.t0[i].Store(nanotime())
		pr.agg[i].Store(aggID)
	}
	srv, err := fakex.New(fcfg)
	if err != nil {
		return st, err
	}
	start := srv.Clock() // the data time of the first trade, within a millisecond
	if err := srv.Start(); err != nil {
		return st, err
	}
	defer srv.Close()

	lcfg.Endpoints = exchange.Endpoints{WS: srv.WSURL(), REST: srv.RESTURL()}
	lcfg.Conns = cfg.Conns
	lcfg.StreamsPerConn = (cfg.Symbols + cfg.Conns - 1) / cfg.Conns
	// fakex's clock stands still until its first trade (the daemon's 30 s
	// would leave the daemon's clock behind by the connection set-up for as
	// long): read it often.
	lcfg.TimeSync = 200 * time.Millisecond
	lcfg.Status = 0
	sink := &capacitySink{
		latencySink: latencySink{probe: pr, lat: make([]int64, 0, 1<<16)},
		latAt:       make([]int64, 0, 1<<16),
		clock:       srv.Clock,
		base:        uint8(bi),
		firstOpen:   make([]int64, cfg.Symbols+16),
		closes:      make([]closeRec, 0, 4*cfg.Symbols*len(pcfg.Shard.Intervals)),
	}
	for i := range sink.firstOpen {
		sink.firstOpen[i] = math.MaxInt64
	}
	d, err := runDaemon(ctx, cancel, lcfg, pcfg, table, sink, cfg.Log, func(p *pipeline.Pipeline, live *feed.Session) {
		// Offer the rate for the step (until the aligned period has closed
		// by watermark too), then stop the exchange and let the daemon take
		// in what is on the wire.
		offerStart := time.Now()
		if exchange.Sleep(ctx, offer) != nil {
			return
		}
		if cfg.AlignCloses {
			// fakex behind the wall clock (starved of CPU) delays the
			// exchange time the aligned period needs; wait a bounded while.
			target := boundaryFrom(base, start+CloseWarmup.Milliseconds()/2) + (grace + CloseMargin).Milliseconds()
			for deadline := time.Now().Add(grace + CloseMargin); srv.Clock() < target && time.Now().Before(deadline); {
				if exchange.Sleep(ctx, 10*time.Millisecond) != nil {
					return
				}
			}
		}
		srv.Stop()
		st.OfferSeconds = time.Since(offerStart).Seconds()
		sink.stopClock.Store(srv.Clock())
		st.ClockOffsetMS = live.Clock() - srv.Clock()
		for _, r := range srv.Produced() {
			st.Produced += r.Count
		}
		for deadline := time.Now().Add(3 * time.Second); p.Routed() < uint64(st.Produced) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	})
	if err != nil {
		return st, err
	}
	if err := outer.Err(); err != nil {
		return st, err
	}
	heapRest := liveHeapBytes()
	mem.finish(&st.Memory, d, heapRest)

	st.Applied = int64(d.shard.Trades) // the live slots drop duplicates before the shards
	st.Lost = max(0, st.Produced-st.Applied)
	if st.Applied > 0 {
		st.AllocsPerTrade = float64(mallocs()-mem.allocs) / float64(st.Applied)
	}
	st.AchievedRate = float64(st.Applied) / st.OfferSeconds
	st.ProducedRate = float64(st.Produced) / st.OfferSeconds
	st.Reconnects, st.GapsFilled = d.reconnects, d.gapsClosed
	st.PromptCloses, st.KlinesClosed, st.KlineUpdates = d.shard.PromptCloses, d.klinesClosed, d.klineUpdates
	st.SlowConns = srv.Stats().ConnsSlow
	lat := sink.lat
	st.Samples = len(lat)
	var warm []int64
	for i, l := range lat {
		if sink.latAt[i]-l >= firstSample.Load()+int64(CloseWarmup) {
			warm = append(warm, l)
		}
	}
	if len(warm) > 0 {
		st.P99LatencyWarmUS = quantileUS(warm, 0.99)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		q := func(p float64) float64 { return float64(lat[int(math.Ceil(p*float64(len(lat))))-1]) / 1e3 }
		st.P50LatencyUS, st.P99LatencyUS = q(0.5), q(0.99)
	}
	sink.summarise(&st, base, start+CloseWarmup.Milliseconds()/2, sink.stopClock.Load()-(grace+CloseMargin).Milliseconds())
	switch {
	case st.Lost > 0:
		st.FailureReason = fmt.Sprintf("%d trades lost", st.Lost)
	case st.Samples == 0:
		st.FailureReason = "no latency samples"
	case st.P99LatencyUS > float64(cfg.SLO.Microseconds()):
		st.FailureReason = "p99 latency over the SLO"
	case st.AchievedRate < 0.9*rate:
		st.FailureReason = "could not keep up with the offered rate"
	case st.SlowConns > 0:
		st.FailureReason = "fakex dropped a connection as too slow"
	default:
		st.Sustained = true
	}
	return st, nil
}

// daemonRun is what is left of a stopped daemon: its counters, its live
// heap, and weak pointers that say whether it was collected.
type daemonRun struct {
	shard                      shard.Counters
	klinesClosed, klineUpdates uint64
	reconnects, gapsClosed     uint64
	heapAll                    uint64 // live heap with the daemon still referenced
	pipeline                   weak.Pointer[pipeline.Pipeline]
	session                    weak.Pointer[feed.Session]
}

// collected reports whether the daemon's pipeline and session are gone.
func (d *daemonRun) collected() bool {
	return d.pipeline.Value() == nil && d.session.Value() == nil
}

// runDaemon starts the feed and the pipeline as the daemon does, calls offer
// while they run, stops them (cancel) and returns their figures. Nothing of
// the daemon outlives the call but what the sink and the table hold, so the
// caller can measure the heap without it.
func runDaemon(ctx context.Context, cancel context.CancelFunc, lcfg feed.Config, pcfg pipeline.Config, table *parse.SymbolTable,
	sink pipeline.Sink, log *zap.Logger, offer func(*pipeline.Pipeline, *feed.Session)) (*daemonRun, error) {
	live, err := feed.New(ctx, lcfg, table, log)
	if err != nil {
		return nil, err
	}
	pcfg.Clock = live.Clock
	p, err := pipeline.New(pcfg, table, live.Sources(), sink, log)
	if err != nil {
		return nil, err
	}
	live.Start(ctx, p)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	offer(p, live)
	cancel()
	if err := <-done; err != nil {
		return nil, err
	}
	live.Wait()
	ps, ls := p.Stats(), live.Stats()
	d := &daemonRun{
		shard: ps.Shard, klinesClosed: ps.KlinesClosed, klineUpdates: ps.KlineUpdates,
		reconnects: ls.Reconnects, gapsClosed: ls.GapsClosed,
		pipeline: weak.Make(p), session: weak.Make(live),
	}
	d.heapAll = liveHeapBytes()
	runtime.KeepAlive(p)
	runtime.KeepAlive(live)
	return d, nil
}

// closeRec is one closed kline as the sink saw it.
type closeRec struct {
	end   int64 // CloseTime+1, exchange ms
	delay int64 // exchange clock at the sink - end, ms
	iv    uint8
	empty bool
}

// capacitySink is the latency sink plus the close delays: it records every
// closed kline (corrections and marks aside) with the exchange's clock, and
// the first base period it saw of each symbol, to count the klines that
// should have closed and did not. It runs on the sink goroutine only.
type capacitySink struct {
	latencySink
	clock     func() int64 // the exchange's clock, Unix ms
	base      uint8
	closes    []closeRec
	latAt     []int64 // when each latency sample reached the sink (nanotime)
	firstOpen []int64 // per symbol: the earliest base open time seen, MaxInt64 none
	stopClock atomic.Int64
}

func (s *capacitySink) Kline(k *shard.Kline) error {
	if k.Mark {
		return nil
	}
	if k.Interval == s.base && int(k.Symbol) < len(s.firstOpen) && k.OpenTime < s.firstOpen[k.Symbol] {
		s.firstOpen[k.Symbol] = k.OpenTime
	}
	if !k.Closed {
		n := len(s.lat)
		err := s.latencySink.Kline(k)
		if len(s.lat) > n {
			s.latAt = append(s.latAt, nanotime())
		}
		return err
	}
	if k.Flags&shard.FlagCorrected != 0 {
		return nil
	}
	s.closes = append(s.closes, closeRec{end: k.CloseTime + 1, delay: s.clock() - (k.CloseTime + 1), iv: k.Interval, empty: k.Flags&shard.FlagEmpty != 0})
	return nil
}

// summarise fills st's close figures from the klines whose period ended in
// [from, to] (exchange ms): every one of them had Grace + CloseMargin to
// close before the step stopped. A base kline that should have closed in the
// window (its symbol had a base kline open before the period end, as the
// sink saw) and did not reach the sink counts as unclosed. Call it once the
// pipeline has stopped.
func (s *capacitySink) summarise(st *CapacityStep, base shard.Interval, from, to int64) {
	if to < from {
		return
	}
	st.CloseWindowMS = to - from
	var active, quiet, parents []int64
	closedAt := map[int64]int{}
	for _, c := range s.closes {
		if c.end < from || c.end > to {
			continue
		}
		switch {
		case c.iv != s.base:
			parents = append(parents, c.delay)
		case c.empty:
			quiet = append(quiet, c.delay)
		default:
			active = append(active, c.delay)
		}
		if c.iv == s.base {
			closedAt[c.end]++
		}
	}
	st.CloseActive, st.CloseQuiet, st.CloseParents = closeDelays(active), closeDelays(quiet), closeDelays(parents)
	for e := boundaryFrom(base, from); e <= to; e = base.NextOpen(e) {
		st.ClosePeriods++
		want := 0
		for _, f := range s.firstOpen {
			if f < e {
				want++
			}
		}
		st.UnclosedBase += max(0, want-closedAt[e])
	}
}

// closeDelays returns the quantiles of v (ms; sorted in place).
func closeDelays(v []int64) CloseDelays {
	if len(v) == 0 {
		return CloseDelays{}
	}
	slices.Sort(v)
	q := func(p float64) float64 { return float64(v[max(int(math.Ceil(p*float64(len(v))))-1, 0)]) }
	return CloseDelays{Klines: len(v), P50MS: q(0.5), P99MS: q(0.99), MaxMS: q(1)}
}

// memWatch measures one step's memory: it collects what the previous steps
// left, resets the RSS peak and samples the Go heap every 100 ms.
type memWatch struct {
	reset     bool // the RSS peak was reset for the step
	heapPeak  atomic.Uint64
	allocs    uint64 // heap objects allocated before the step
	done      chan struct{}
	wg        sync.WaitGroup
	stopOnce  sync.Once
	available bool
}

func watchMemory() *memWatch {
	// The previous steps' garbage is collected but its pages stay resident
	// (returning them, debug.FreeOSMemory, would make this step page-fault
	// them back in while it is measured): a step's RSS peak is at least what
	// the steps before it left resident.
	runtime.GC()
	w := &memWatch{done: make(chan struct{})}
	_, err := readSelfMem()
	w.available = err == nil
	w.reset = w.available && resetPeakRSS() == nil
	w.heapPeak.Store(heapObjectsBytes())
	w.allocs = mallocs()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				if h := heapObjectsBytes(); h > w.heapPeak.Load() {
					w.heapPeak.Store(h)
				}
			}
		}
	}()
	return w
}

func (w *memWatch) stop() {
	w.stopOnce.Do(func() {
		close(w.done)
		w.wg.Wait()
	})
}

// finish fills m once the daemon has stopped: heapRest is the live heap
// after it was dropped.
func (w *memWatch) finish(m *StepMem, d *daemonRun, heapRest uint64) {
	w.stop()
	const mb = 1 << 20
	m.HeapPeakMB = float64(w.heapPeak.Load()) / mb
	m.DaemonHeapMB = -1
	if d.collected() && d.heapAll >= heapRest {
		m.DaemonHeapMB = float64(d.heapAll-heapRest) / mb
	}
	if !w.available {
		return
	}
	pm, err := readSelfMem()
	if err != nil {
		return
	}
	m.RSSEndMB = float64(pm.RSSKB) / 1024
	m.RSSPeakMB = float64(pm.HWMKB) / 1024
	m.RSSPeakSource = "VmHWM-process"
	if w.reset {
		m.RSSPeakSource = "VmHWM"
	}
}

// procMem is the memory /proc/<pid>/status reports, in kB.
type procMem struct {
	RSSKB int64 // VmRSS: resident now
	HWMKB int64 // VmHWM: the resident peak (since start or the last reset)
}

// readProcMem parses VmRSS and VmHWM from a /proc/<pid>/status text.
func readProcMem(r io.Reader) (procMem, error) {
	var m procMem
	var seen int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.RSSKB
		case "VmHWM":
			dst = &m.HWMKB
		}
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("cannot parse %s in process status: want \"<n> kB\", got %q", name, strings.TrimSpace(value))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return m, fmt.Errorf("cannot parse %s in process status: bad size %q", name, f[0])
		}
		*dst = n
		seen++
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("cannot read process status: %w", err)
	}
	if m.RSSKB == 0 || m.HWMKB == 0 || seen != 2 {
		return m, errors.New("cannot read process memory: VmRSS or VmHWM missing from the status")
	}
	return m, nil
}

// readSelfMem reads this process's RSS and RSS peak (Linux).
func readSelfMem() (procMem, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return procMem{}, fmt.Errorf("cannot read process memory: %w", err)
	}
	defer f.Close()
	return readProcMem(f)
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux 4.0+).
func resetPeakRSS() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("cannot reset the RSS peak: %w", err)
	}
	return nil
}

// liveHeapBytes collects garbage and returns the live heap.
func liveHeapBytes() uint64 {
	runtime.GC()
	return readMetric("/gc/heap/live:bytes")
}

// heapObjectsBytes is the heap in use now: live objects and garbage not yet
// collected.
func heapObjectsBytes() uint64 { return readMetric("/memory/classes/heap/objects:bytes") }

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
