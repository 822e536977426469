package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// Unset is the start or end time of a History query that was not given.
const Unset int64 = -1

// ErrConfig is wrapped by New for every invalid Config field.
var ErrConfig = errors.New("invalid api config")

// History is the store of closed klines the REST klines endpoint reads.
// Klines returns the klines of symbol (upper case, "BTCUSDT") and interval
// (its name, "1m", "90m") whose open times are in [start, end], oldest first,
// at most limit (>= 1) of them. start and end may be Unset: with only end, the
// newest limit klines opening at or before end; with only start, the oldest
// limit from start; with neither, the newest limit. The Symbol and Interval
// index fields of the returned klines are ignored. It is called from HTTP
// handler goroutines, concurrently, and must honour ctx.
type History interface {
	Klines(ctx context.Context, symbol, interval string, start, end int64, limit int) ([]shard.Kline, error)
}

// HistoryFunc adapts a function to History, e.g. a store read bound to the
// daemon's market:
//
//	api.HistoryFunc(func(ctx context.Context, sym, iv string, start, end int64, limit int) ([]shard.Kline, error) {
//		return db.Klines(ctx, "futures", sym, iv, start, end, limit)
//	})
type HistoryFunc func(ctx context.Context, symbol, interval string, start, end int64, limit int) ([]shard.Kline, error)

// Klines implements History.
func (f HistoryFunc) Klines(ctx context.Context, symbol, interval string, start, end int64, limit int) ([]shard.Kline, error) {
	return f(ctx, symbol, interval, start, end, limit)
}

// Status is what the chart page's status panel shows about the daemon. Every
// field is optional; the server adds its own WebSocket figures.
type Status struct {
	TradesPerSec float64 `json:"trades_per_sec"`
	LagMillis    int64   `json:"lag_ms"`      // exchange clock minus the watermark, or the feed's delay
	Gaps         int64   `json:"gaps"`        // trade-id gaps opened (or unfillable) so far
	Connections  int     `json:"connections"` // exchange connections of the daemon
	Symbols      int     `json:"symbols"`
	// Extra lines for the panel, shown in key order.
	Extra map[string]string `json:"extra,omitempty"`
}

// ReadyCheck is one condition of /readyz: Check returns nil when it holds
// ("connected", "backfill done", "store writable").
type ReadyCheck struct {
	Name  string
	Check func() error
}

// Config configures a Server. Start from DefaultConfig; Symbols and Intervals
// are required.
type Config struct {
	// Market is "futures" (USD-M, /fapi/v1) or "spot" (/api/v3): it picks the
	// REST prefix that lists the symbols, the default limits and the cadence.
	Market string
	// Listen is the TCP address; a non-loopback address needs Token or Open.
	Listen string
	// Token, when set, is required on every request except /healthz: as the
	// path prefix /t/<token> (so any client that takes a base URL works:
	// http://host:8080/t/<token>), the X-Klagg-Token header, or
	// "Authorization: Bearer <token>".
	Token string
	// Open allows a non-loopback Listen without a Token: anyone who reaches the
	// address may use the API. pprof is then served only on AdminListen.
	Open bool
	// AdminListen, when set, is a second listener serving /debug/pprof/ and
	// /metrics only (keep it on loopback). Without it, pprof is served on Listen
	// to trusted requests: a loopback Listen, or a request carrying the Token.
	AdminListen string

	// Symbols is the daemon's symbol table: Kline.Symbol indexes it. Symbols
	// added while running are served at once.
	Symbols *parse.SymbolTable
	// Intervals are the pipeline's intervals: Kline.Interval indexes them.
	// Custom ones (2m, 90m) are served like Binance's.
	Intervals []shard.Interval
	// History serves closed klines to REST; nil serves only the klines the
	// server saw published since it started.
	History History
	// Assets, when set, returns the base and quote asset of a symbol for
	// exchangeInfo; otherwise they are guessed from common quote suffixes.
	Assets func(symbol string) (base, quote string, ok bool)
	// Clock is the exchange's time in Unix ms (REST time, event times "E");
	// nil uses the local clock.
	Clock func() int64
	// Status feeds the chart page's status panel; nil shows the server's own
	// figures only.
	Status func() Status
	// Ready are /readyz's checks; none means ready once serving.
	Ready []ReadyCheck
	// Log receives connection-level events (sampled); nil logs nothing.
	Log *zap.Logger
	// Metrics is the set /metrics writes; the server registers its metrics in
	// it and the daemon may register its own. nil makes a new set (Server.Metrics).
	Metrics *metrics.Set

	// DefaultLimit and MaxLimit bound REST klines' limit (0: Binance's, futures
	// 500 and 1500, spot 500 and 1000).
	DefaultLimit, MaxLimit int
	// HistoryTimeout bounds one History call.
	HistoryTimeout time.Duration
	// Cadence is how often a stream's open-kline update is sent at most
	// (0: Binance's, futures 250 ms, spot 2 s and 1 s for intervals under a
	// minute). EveryChange sends every update as it is published instead.
	Cadence     time.Duration
	EveryChange bool
	// Corrections sends a corrected closed kline (shard.FlagCorrected) again as
	// a closing event (x: true) to WebSocket subscribers. Binance never corrects;
	// clients that key klines by open time simply replace the old one.
	Corrections bool

	// QueueSize is the Publish queue's capacity in klines; closed klines that do
	// not fit wait in a spill list of up to SpillSize before any is lost.
	QueueSize, SpillSize int
	// Recent is how many klines per stream the server keeps for REST answers
	// when History lags (the open ones and the last closed ones).
	Recent int

	// WebSocket limits, Binance's by default: MaxConns connections at once,
	// ConnAttempts per IP per ConnWindow (0 disables), MaxStreams per connection,
	// MessagesPerSec incoming messages (text, ping, pong) per connection
	// (futures 10, spot 5), MaxMessage bytes per incoming message.
	MaxConns, ConnAttempts, MaxStreams, MessagesPerSec, MaxMessage int
	ConnWindow                                                     time.Duration
	// PingEvery and PongTimeout: the server pings every PingEvery and closes a
	// connection that sends no pong within PongTimeout (futures 3 min and 10 min,
	// spot 20 s and 1 min). MaxConnAge closes a connection after 24 h as Binance.
	PingEvery, PongTimeout, MaxConnAge time.Duration
	// SendQueue bounds the frames queued for one connection (open-kline updates
	// coalesce per stream, so closed klines and replies are what fills it); a
	// connection over it is closed with reason "slow consumer".
	SendQueue int
	// WriteTimeout bounds one write to a connection.
	WriteTimeout time.Duration
}

// DefaultConfig returns a futures server on 127.0.0.1:8080 with Binance's
// limits; set Symbols and Intervals.
func DefaultConfig() Config {
	return Config{
		Market:         "futures",
		Listen:         "127.0.0.1:8080",
		HistoryTimeout: 5 * time.Second,
		Corrections:    true,
		QueueSize:      16384,
		SpillSize:      1 << 20,
		Recent:         4,
		MaxConns:       4096,
		ConnAttempts:   300,
		ConnWindow:     5 * time.Minute,
		MaxStreams:     1024,
		MaxMessage:     64 << 10,
		MaxConnAge:     24 * time.Hour,
		SendQueue:      8192,
		WriteTimeout:   10 * time.Second,
	}
}

// withDefaults validates cfg and fills the market-dependent zero fields.
func (cfg Config) withDefaults() (Config, error) {
	spot := cfg.Market == "spot"
	if cfg.Market != "futures" && !spot {
		return cfg, fmt.Errorf("cannot configure api: market %q (want futures or spot): %w", cfg.Market, ErrConfig)
	}
	if cfg.Symbols == nil {
		return cfg, fmt.Errorf("cannot configure api: no symbol table: %w", ErrConfig)
	}
	if len(cfg.Intervals) == 0 || len(cfg.Intervals) > 255 {
		return cfg, fmt.Errorf("cannot configure api: %d intervals (want 1..255): %w", len(cfg.Intervals), ErrConfig)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if !isLoopback(cfg.Listen) && cfg.Token == "" && !cfg.Open {
		return cfg, fmt.Errorf("cannot configure api: %s is not a loopback address: set a token, or say the server is open: %w", cfg.Listen, ErrConfig)
	}
	if cfg.AdminListen != "" && !isLoopback(cfg.AdminListen) && cfg.Token == "" {
		return cfg, fmt.Errorf("cannot configure api: admin address %s is not loopback and there is no token: %w", cfg.AdminListen, ErrConfig)
	}
	def := DefaultConfig()
	pick := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	pickDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	pick(&cfg.DefaultLimit, 500)
	if spot {
		pick(&cfg.MaxLimit, 1000)
		pick(&cfg.MessagesPerSec, 5)
		pickDur(&cfg.PingEvery, 20*time.Second)
		pickDur(&cfg.PongTimeout, time.Minute)
	} else {
		pick(&cfg.MaxLimit, 1500)
		pick(&cfg.MessagesPerSec, 10)
		pickDur(&cfg.PingEvery, 3*time.Minute)
		pickDur(&cfg.PongTimeout, 10*time.Minute)
	}
	cfg.DefaultLimit = min(cfg.DefaultLimit, cfg.MaxLimit)
	pick(&cfg.QueueSize, def.QueueSize)
	pick(&cfg.SpillSize, def.SpillSize)
	pick(&cfg.Recent, def.Recent)
	pick(&cfg.MaxConns, def.MaxConns)
	pick(&cfg.MaxStreams, def.MaxStreams)
	pick(&cfg.MaxMessage, def.MaxMessage)
	pick(&cfg.SendQueue, def.SendQueue)
	pickDur(&cfg.ConnWindow, def.ConnWindow)
	pickDur(&cfg.MaxConnAge, def.MaxConnAge)
	pickDur(&cfg.WriteTimeout, def.WriteTimeout)
	pickDur(&cfg.HistoryTimeout, def.HistoryTimeout)
	if cfg.ConnAttempts < 0 {
		cfg.ConnAttempts = 0
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Clock == nil {
		cfg.Clock = func() int64 { return time.Now().UnixMilli() }
	}
	return cfg, nil
}

// cadence is how often open-kline updates of iv are sent.
func (cfg *Config) cadence(iv shard.Interval) time.Duration {
	if cfg.Cadence > 0 {
		return cfg.Cadence
	}
	if cfg.Market != "spot" {
		return 250 * time.Millisecond
	}
	if iv.Months == 0 && iv.Millis < 60_000 {
		return time.Second
	}
	return 2 * time.Second
}

// isLoopback reports whether a listen address binds loopback only. A host
// name other than localhost, or an empty host (all interfaces), is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
