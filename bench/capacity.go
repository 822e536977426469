package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

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
	Duration time.Duration // all steps together
	Rates    []float64     // offered trades per second, one step each, rising
	SLO      time.Duration // p99 latency a step must stay under
	Market   string
	Log      *zap.Logger
}

// DefaultCapacityConfig is what `klagg capacity` runs without flags.
func DefaultCapacityConfig() CapacityConfig {
	return CapacityConfig{
		Symbols: 1000, Conns: 4, Shards: 2, Duration: 20 * time.Second, Market: "futures",
		Rates: []float64{50_000, 100_000, 200_000, 400_000, 700_000, 1_000_000, 1_400_000, 2_000_000},
		SLO:   50 * time.Millisecond,
	}
}

// CapacityStep is one offered rate.
type CapacityStep struct {
	OfferedRate   float64 `json:"offered_rate"`
	AchievedRate  float64 `json:"achieved_rate"` // trades applied per second of the step
	ProducedRate  float64 `json:"produced_rate"` // what fakex managed to send (it shares the cores)
	Produced      int64   `json:"produced"`
	Applied       int64   `json:"applied"`
	Lost          int64   `json:"lost"`
	Reconnects    uint64  `json:"reconnects"`
	GapsFilled    uint64  `json:"gaps_filled"`
	P50LatencyUS  float64 `json:"p50_latency_us"`
	P99LatencyUS  float64 `json:"p99_latency_us"`
	Samples       int     `json:"latency_samples"`
	SlowConns     int64   `json:"fakex_slow_conns"`
	Sustained     bool    `json:"sustained"`
	FailureReason string  `json:"failure,omitempty"`
}

// CapacityResult is printed as JSON by `klagg capacity --json`.
type CapacityResult struct {
	MaxSustainedTradesPerSec float64        `json:"max_sustained_trades_per_sec"`
	P99LatencyUSAtMax        float64        `json:"p99_latency_us_at_max"`
	LostTrades               int64          `json:"lost_trades"`
	SLOUS                    float64        `json:"slo_p99_us"`
	Symbols                  int            `json:"symbols"`
	Conns                    int            `json:"conns"`
	Shards                   int            `json:"shards"`
	Intervals                int            `json:"intervals"`
	GOMAXPROCS               int            `json:"gomaxprocs"`
	Steps                    []CapacityStep `json:"steps"`
}

// RunCapacity raises the offered rate step by step until a step loses a trade,
// misses the latency SLO or cannot keep up; the last step that did none of these
// is the capacity.
func RunCapacity(ctx context.Context, cfg CapacityConfig) (*CapacityResult, error) {
	res := &CapacityResult{Symbols: cfg.Symbols, Conns: cfg.Conns, Shards: cfg.Shards, SLOUS: float64(cfg.SLO.Microseconds()), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	step := cfg.Duration / time.Duration(max(1, len(cfg.Rates)))
	for _, rate := range cfg.Rates {
		st, err := capacityStep(ctx, cfg, rate, step, res)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, st)
		res.LostTrades += st.Lost
		if !st.Sustained {
			break
		}
		res.MaxSustainedTradesPerSec = st.AchievedRate
		res.P99LatencyUSAtMax = st.P99LatencyUS
	}
	return res, nil
}

func capacityStep(ctx context.Context, cfg CapacityConfig, rate float64, dur time.Duration, res *CapacityResult) (CapacityStep, error) {
	st := CapacityStep{OfferedRate: rate}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The daemon's symbol table is filled from fakex's exchangeInfo; samples name
	// symbols, looked up when the producer reports them.
	table := parse.NewSymbolTable()
	pr := &probe{agg: make([]atomic.Int64, cfg.Symbols+16), t0: make([]atomic.Int64, cfg.Symbols+16)}
	fcfg := fakex.DefaultConfig()
	fcfg.Market, fcfg.Symbols, fcfg.Rate, fcfg.WaitConns = cfg.Market, cfg.Symbols, rate, cfg.Conns
	fcfg.SampleEvery = max(1, int(rate/5000))
	fcfg.Sample = func(symbol string, aggID int64) {
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
	if err := srv.Start(); err != nil {
		return st, err
	}
	defer srv.Close()

	market, err := exchange.ParseMarket(cfg.Market)
	if err != nil {
		return st, err
	}
	lcfg := feed.DefaultConfig(market)
	lcfg.Endpoints = exchange.Endpoints{WS: srv.WSURL(), REST: srv.RESTURL()}
	lcfg.Conns = cfg.Conns
	lcfg.StreamsPerConn = (cfg.Symbols + cfg.Conns - 1) / cfg.Conns
	lcfg.TimeSync = 200 * time.Millisecond
	lcfg.Status = 0
	live, err := feed.New(ctx, lcfg, table, cfg.Log)
	if err != nil {
		return st, err
	}
	pcfg := pipeline.DefaultConfig()
	pcfg.Shards = cfg.Shards
	pcfg.Shard.Intervals = shard.BinanceIntervals(cfg.Market == "spot")
	pcfg.Updates = true
	pcfg.Clock = live.Clock
	res.Intervals = len(pcfg.Shard.Intervals)
	sink := &latencySink{probe: pr, lat: make([]int64, 0, 1<<16)}
	p, err := pipeline.New(pcfg, table, live.Sources(), sink, cfg.Log)
	if err != nil {
		return st, err
	}
	live.Start(ctx, p)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	// Offer the rate for the step, then stop the exchange and let the daemon
	// take in what is on the wire.
	select {
	case <-ctx.Done():
		return st, ctx.Err()
	case <-time.After(dur):
	}
	srv.Stop()
	for _, r := range srv.Produced() {
		st.Produced += r.Count
	}
	for deadline := time.Now().Add(3 * time.Second); p.Routed() < uint64(st.Produced) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		return st, err
	}
	live.Wait()
	ps := p.Stats()
	st.Applied = int64(ps.Shard.Trades) // the live slots drop duplicates before the shards
	st.Lost = max(0, st.Produced-st.Applied)
	st.AchievedRate = float64(st.Applied) / dur.Seconds()
	st.ProducedRate = float64(st.Produced) / dur.Seconds()
	ls := live.Stats()
	st.Reconnects, st.GapsFilled = ls.Reconnects, ls.GapsClosed
	st.SlowConns = srv.Stats().ConnsSlow
	lat := sink.lat
	st.Samples = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		q := func(p float64) float64 { return float64(lat[int(math.Ceil(p*float64(len(lat))))-1]) / 1e3 }
		st.P50LatencyUS, st.P99LatencyUS = q(0.5), q(0.99)
	}
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
