package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/klagg/klagg/api"
	"github.com/klagg/klagg/feed"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// serveFlags are the flags of klagg run's Binance-compatible API.
type serveFlags struct {
	listen, token, admin string
	open, everyChange    bool
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the Binance-compatible API (REST, WebSocket), /metrics, /healthz, /readyz and the chart at /; empty: none")
	fs.StringVar(&f.token, "token", "", "token every request must carry (/t/TOKEN/... or an X-Klagg-Token or Bearer header); needed to --listen beyond loopback")
	fs.BoolVar(&f.open, "open", false, "allow a non-loopback --listen without a token: anyone who reaches it may use the API")
	fs.StringVar(&f.admin, "admin-listen", "", "loopback address serving only /debug/pprof and /metrics")
	fs.BoolVar(&f.everyChange, "every-change", false, "send open-kline updates to WebSocket clients on every change, not at Binance's cadence")
}

// served is what the API server reads from parts of the daemon that exist only
// once it serves (the exchange clock, the pipeline, the store): set later,
// read through atomic pointers.
type served struct {
	clock   atomic.Pointer[func() int64]
	status  atomic.Pointer[func() api.Status]
	ready   atomic.Pointer[[]api.ReadyCheck]
	history atomic.Pointer[store.DB] // REST klines' history; nil: only what the server saw
}

// newServer checks the API's flags and builds its server (not listening yet):
// every mistake is found before the network is touched.
func (f *serveFlags) newServer(market string, table *parse.SymbolTable, intervals []shard.Interval, log *zap.Logger) (*api.Server, *served, error) {
	if f.listen == "" {
		return nil, nil, nil
	}
	late := &served{}
	cfg := api.DefaultConfig()
	cfg.Market, cfg.Listen, cfg.Token, cfg.Open, cfg.AdminListen = market, f.listen, f.token, f.open, f.admin
	cfg.EveryChange = f.everyChange
	cfg.Symbols, cfg.Intervals, cfg.Log = table, intervals, log.Named("api")
	cfg.Clock = func() int64 {
		if c := late.clock.Load(); c != nil {
			if t := (*c)(); t > 0 {
				return t
			}
		}
		return time.Now().UnixMilli() // before the exchange's clock was read
	}
	cfg.History = api.HistoryFunc(func(ctx context.Context, sym, iv string, start, end int64, limit int) ([]shard.Kline, error) {
		if db := late.history.Load(); db != nil {
			return db.Klines(ctx, market, sym, iv, start, end, limit)
		}
		return nil, nil
	})
	cfg.Status = func() api.Status {
		if st := late.status.Load(); st != nil {
			return (*st)()
		}
		return api.Status{}
	}
	cfg.Ready = []api.ReadyCheck{{Name: "started", Check: func() error {
		checks := late.ready.Load()
		if checks == nil {
			return fmt.Errorf("reading the symbol universe")
		}
		for _, c := range *checks {
			if err := c.Check(); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
		}
		return nil
	}}}
	srv, err := api.New(cfg)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	return srv, late, nil
}

// daemonMetrics registers the pipeline's and the live feed's counters in set,
// read from snapshots taken at most twice a second whatever the scrape rate.
func daemonMetrics(set *metrics.Set, p *pipeline.Pipeline, live *feed.Session, clock func() int64) {
	var mu sync.Mutex
	var at time.Time
	var ps pipeline.Stats
	var ls feed.Stats
	snap := func() (*pipeline.Stats, *feed.Stats) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) > 500*time.Millisecond {
			ps, ls, at = p.Snapshot(), live.Stats(), time.Now()
		}
		return &ps, &ls
	}
	pg := func(name string, f func(*pipeline.Stats) uint64) {
		set.NewGauge(name, func() float64 { p, _ := snap(); return float64(f(p)) })
	}
	lg := func(name string, f func(*feed.Stats) float64) {
		set.NewGauge(name, func() float64 { _, l := snap(); return f(l) })
	}
	pg(`klagg_frames_total`, func(s *pipeline.Stats) uint64 { return s.Sources.Frames })
	pg(`klagg_frame_bytes_total`, func(s *pipeline.Stats) uint64 { return s.Sources.Bytes })
	for k := parse.Kind(0); k < parse.NumKinds; k++ {
		pg(fmt.Sprintf(`klagg_frames_by_kind_total{kind=%q}`, k), func(s *pipeline.Stats) uint64 { return s.Parse.Frames[k] })
	}
	for r := parse.Reason(0); r < parse.NumReasons; r++ {
		pg(fmt.Sprintf(`klagg_frames_rejected_total{reason=%q}`, r), func(s *pipeline.Stats) uint64 { return s.Parse.Errors[r] })
	}
	pg(`klagg_trades_routed_total`, func(s *pipeline.Stats) uint64 { return s.Sources.Trades })
	pg(`klagg_trades_applied_total`, func(s *pipeline.Stats) uint64 { return s.Shard.Trades - s.Shard.TooLateTrades })
	pg(`klagg_trades_duplicate_total{stage="shard"}`, func(s *pipeline.Stats) uint64 { return s.Shard.Duplicates })
	pg(`klagg_trades_too_late_total`, func(s *pipeline.Stats) uint64 { return s.Shard.TooLateTrades })
	pg(`klagg_trades_late_total`, func(s *pipeline.Stats) uint64 { return s.Shard.Late })
	pg(`klagg_klines_closed_total`, func(s *pipeline.Stats) uint64 { return s.KlinesClosed })
	pg(`klagg_klines_empty_total`, func(s *pipeline.Stats) uint64 { return s.Shard.EmptyKlines })
	pg(`klagg_kline_updates_total`, func(s *pipeline.Stats) uint64 { return s.KlineUpdates })
	pg(`klagg_kline_marks_total`, func(s *pipeline.Stats) uint64 { return s.KlineMarks })
	pg(`klagg_klines_overflow_total`, func(s *pipeline.Stats) uint64 { return s.Shard.Overflows })
	pg(`klagg_ring_trades_queued`, func(s *pipeline.Stats) uint64 { return s.Rings.Queued })
	pg(`klagg_ring_full_waits_total`, func(s *pipeline.Stats) uint64 { return s.Rings.FullWaits })
	set.NewGauge(`klagg_watermark_lag_seconds`, func() float64 {
		p, _ := snap()
		now := clock()
		if p.Watermark <= 0 || now <= 0 || p.Watermark > now {
			return 0
		}
		return float64(now-p.Watermark) / 1e3
	})
	u := func(v uint64) float64 { return float64(v) }
	lg(`klagg_trades_received_total`, func(s *feed.Stats) float64 { return u(s.Received) })
	lg(`klagg_trades_filled_total`, func(s *feed.Stats) float64 { return u(s.Filled) })
	lg(`klagg_trades_duplicate_total{stage="feed"}`, func(s *feed.Stats) float64 { return u(s.Duplicates) })
	lg(`klagg_trades_bogus_total`, func(s *feed.Stats) float64 { return u(s.Bogus) })
	lg(`klagg_trades_unwanted_total`, func(s *feed.Stats) float64 { return u(s.Unwanted) })
	lg(`klagg_trades_held`, func(s *feed.Stats) float64 { return u(s.Held) })
	lg(`klagg_trades_lost_total`, func(s *feed.Stats) float64 { return u(s.TradesLost) })
	lg(`klagg_symbols_holding`, func(s *feed.Stats) float64 { return float64(s.Holding) })
	lg(`klagg_gaps_opened_total`, func(s *feed.Stats) float64 { return u(s.GapsOpened) })
	lg(`klagg_gaps_closed_total`, func(s *feed.Stats) float64 { return u(s.GapsClosed) })
	lg(`klagg_gaps_unfillable_total`, func(s *feed.Stats) float64 { return u(s.GapsUnfillable) })
	lg(`klagg_gaps_trailing_total`, func(s *feed.Stats) float64 { return u(s.TrailingGaps) })
	lg(`klagg_holds_expired_total`, func(s *feed.Stats) float64 { return u(s.HoldsExpired) })
	lg(`klagg_reconnects_total`, func(s *feed.Stats) float64 { return u(s.Reconnects) })
	lg(`klagg_rotations_total`, func(s *feed.Stats) float64 { return u(s.Rotations) })
	lg(`klagg_connections_stale_total`, func(s *feed.Stats) float64 { return u(s.StaleReplaced) })
	lg(`klagg_connections_ping_timeouts_total`, func(s *feed.Stats) float64 { return u(s.PingTimeouts) })
	lg(`klagg_connections`, func(s *feed.Stats) float64 { return float64(s.Connected) })
	lg(`klagg_connection_slots`, func(s *feed.Stats) float64 { return float64(s.Slots) })
	lg(`klagg_symbols`, func(s *feed.Stats) float64 { return float64(s.Symbols) })
	lg(`klagg_rest_requests_total`, func(s *feed.Stats) float64 { return u(s.Requests) })
	lg(`klagg_rest_weight_used`, func(s *feed.Stats) float64 { return float64(s.RESTWeightUsed) })
	lg(`klagg_ticker_reads_total`, func(s *feed.Stats) float64 { return u(s.TickerReads) })
	lg(`klagg_clock_offset_seconds`, func(s *feed.Stats) float64 { return float64(s.ClockOffsetMillis) / 1e3 })
}

// daemonStatus feeds the chart page's status panel.
func daemonStatus(p *pipeline.Pipeline, live *feed.Session, clock func() int64) func() api.Status {
	var mu sync.Mutex
	var lastAt time.Time
	var lastRouted uint64
	var rate atomic.Value
	rate.Store(0.0)
	return func() api.Status {
		st := live.Stats()
		mu.Lock()
		if now := time.Now(); now.Sub(lastAt) >= time.Second {
			routed := p.Routed()
			if !lastAt.IsZero() {
				rate.Store(float64(routed-lastRouted) / now.Sub(lastAt).Seconds())
			}
			lastAt, lastRouted = now, routed
		}
		mu.Unlock()
		var lag int64
		if wm, now := p.Snapshot().Watermark, clock(); wm > 0 && now > wm {
			lag = now - wm
		}
		return api.Status{
			TradesPerSec: rate.Load().(float64), LagMillis: lag, Gaps: int64(st.GapsOpened), Connections: st.Connected, Symbols: st.Symbols,
			Extra: map[string]string{
				"held trades":     fmt.Sprint(st.Held),
				"holding symbols": fmt.Sprint(st.Holding),
				"unfillable gaps": fmt.Sprint(st.GapsUnfillable),
				"reconnects":      fmt.Sprint(st.Reconnects),
				"REST weight":     fmt.Sprint(st.RESTWeightUsed),
			},
		}
	}
}

// parseLevel reads --log-level.
func parseLevel(s string) (zapcore.Level, error) {
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
		return l, usageErrorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// gauges returns a function that registers in set a gauge named name whose
// value f reads from a fresh snapshot (a Counters or Stats copy) at each
// scrape.
func gauges[T any](set *metrics.Set, snapshot func() T) func(name string, f func(*T) float64) {
	return func(name string, f func(*T) float64) {
		set.NewGauge(name, func() float64 { v := snapshot(); return f(&v) })
	}
}

// storeMetrics registers the store writer's counters in set.
func storeMetrics(set *metrics.Set, w *store.Writer) {
	g := gauges(set, w.Counters)
	g(`klagg_store_rows_total`, func(c *store.Counters) float64 { return float64(c.Rows) })
	g(`klagg_store_open_rows_total`, func(c *store.Counters) float64 { return float64(c.OpenRows) })
	g(`klagg_store_batches_total`, func(c *store.Counters) float64 { return float64(c.Batches) })
	g(`klagg_store_backpressure_waits_total`, func(c *store.Counters) float64 { return float64(c.BackpressureWaits) })
	g(`klagg_store_write_errors_total`, func(c *store.Counters) float64 { return float64(c.WriteErrors) })
	g(`klagg_store_deleted_total`, func(c *store.Counters) float64 { return float64(c.Deleted) })
	g(`klagg_store_compacted_total`, func(c *store.Counters) float64 { return float64(c.Compacted) })
	g(`klagg_store_marks_missing_total`, func(c *store.Counters) float64 { return float64(c.MarksMissing) })
	g(`klagg_store_queued`, func(c *store.Counters) float64 { return float64(c.Queued) })
	g(`klagg_store_lag_seconds`, func(c *store.Counters) float64 { return c.Lag.Seconds() })
}

// backfillMetrics registers the history backfill's progress in set (zero when
// it is off): what /readyz's "backfill done" waits for, as numbers.
func backfillMetrics(set *metrics.Set, p *backfillProgress) {
	g := gauges(set, p.Stats)
	g(`klagg_backfill_series`, func(st *feed.BackfillStats) float64 { return float64(st.Tasks) })
	g(`klagg_backfill_series_done`, func(st *feed.BackfillStats) float64 { return float64(st.TasksDone) })
	g(`klagg_backfill_series_failed`, func(st *feed.BackfillStats) float64 { return float64(st.TasksFailed) })
	g(`klagg_backfill_klines_wanted`, func(st *feed.BackfillStats) float64 { return float64(st.Periods) })
	g(`klagg_backfill_klines_done`, func(st *feed.BackfillStats) float64 { return float64(st.PeriodsDone) })
	g(`klagg_backfill_klines_fetched_total`, func(st *feed.BackfillStats) float64 { return float64(st.Klines) })
	g(`klagg_backfill_requests_total`, func(st *feed.BackfillStats) float64 { return float64(st.Requests) })
	g(`klagg_backfill_request_errors_total`, func(st *feed.BackfillStats) float64 { return float64(st.Errors) })
	set.NewGauge(`klagg_backfill_pages_refused_total`, func() float64 { return float64(p.badPages.Load()) })
}
