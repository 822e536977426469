package fakex

import (
	"errors"
	"fmt"
	"math"
	"time"
)

var (
	// ErrConfig: a Config field is out of range.
	ErrConfig = errors.New("fakex: bad config")
	// ErrFault: a fault SPEC does not parse.
	ErrFault = errors.New("fakex: bad fault spec")
	// ErrReplay: a replay input cannot be read.
	ErrReplay = errors.New("fakex: cannot read replay input")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("fakex: server already started")
)

// Config describes a fake exchange. Zero durations and sizes take the market's
// defaults (see the field comments).
type Config struct {
	// Market is "futures" (USD-M) or "spot".
	Market string
	// Listen is the TCP address, "127.0.0.1:0" picks a free port.
	Listen string
	// Replay lists recorded files (NDJSON frames, plain or .gz, or
	// data.binance.vision aggTrades CSV/.csv.gz/.zip) served in order. When
	// empty the feed is synthetic (Symbols, Rate).
	Replay []string
	// Speed divides the recorded gaps between trade times; 0 replays as fast
	// as possible.
	Speed float64
	// Symbols is the number of synthetic symbols (S0000USDT, ...).
	Symbols int
	// Rate is synthetic trades per second of wall time; 0 is as fast as
	// possible. The data clock advances at Rate trades per data second too,
	// so a paced feed's data time follows the wall clock.
	Rate float64
	// Faults to inject; see FaultHelp.
	Faults Faults
	// PingEvery is how often the server pings each connection
	// (0: 3 min futures, 20 s spot); PongTimeout how long it waits for the
	// matching pong before closing (0: 10 min futures, 1 min spot).
	PingEvery, PongTimeout time.Duration
	// MaxStreams bounds the streams of one connection (0: 1024).
	MaxStreams int
	// History is the number of trades kept per symbol for REST aggTrades and
	// klines (0: 1,000,000 split evenly over the symbols known at start, at
	// least 1,000). Older ids are no longer served.
	History int
	// WeightPerMinute is the REST request weight an IP may use per minute
	// (0: Binance's, 2,400 futures and 6,000 spot). Requests beyond it get 429
	// with Retry-After, as on Binance; tests lower it to make the budget bind.
	WeightPerMinute int
	// Seed makes the synthetic feed deterministic.
	Seed int64
	// ShutdownGrace is how long after serverShutdown a connection is closed
	// (0: 2 s).
	ShutdownGrace time.Duration
	// QueueBytes bounds a connection's outbound queue (0: 4 MiB). When a
	// queue is full the producer waits for that connection up to SlowTimeout,
	// then drops it (Stats.ConnsSlow): a slow reader throttles the feed for a
	// bounded time, never forever. A queue held by the stall fault is unbounded.
	QueueBytes int
	// SlowTimeout: see QueueBytes (0: 5 s).
	SlowTimeout time.Duration
	// WaitConns holds the feed back until that many WebSocket connections
	// have at least one stream (from the URL or a SUBSCRIBE), so a test or a
	// capacity run sees the feed from its first frame. 0 starts at once.
	WaitConns int
	// Sample, when set, is called by the synthetic producer for every
	// SampleEvery-th aggTrade it sends, just before the frame is queued on the
	// connections: the send side of a latency measurement (capacity tests). It
	// runs on the producer goroutine and must be quick.
	Sample      func(symbol string, aggID int64)
	SampleEvery int
}

// DefaultConfig is a futures exchange on a free loopback port, 10 synthetic
// symbols at 1,000 trades/s, replays at recorded speed.
func DefaultConfig() Config {
	return Config{
		Market:  "futures",
		Listen:  "127.0.0.1:0",
		Speed:   1,
		Symbols: 10,
		Rate:    1000,
		Seed:    1,
	}
}

// withDefaults validates cfg and fills its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Market == "" {
		cfg.Market = "futures"
	}
	spot := cfg.Market == "spot"
	if cfg.Market != "futures" && !spot {
		return cfg, fmt.Errorf("%w: Market must be \"futures\" or \"spot\", got %q", ErrConfig, cfg.Market)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Speed < 0 || math.IsNaN(cfg.Speed) || math.IsInf(cfg.Speed, 0) {
		return cfg, fmt.Errorf("%w: Speed must be >= 0, got %v", ErrConfig, cfg.Speed)
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		return cfg, fmt.Errorf("%w: Rate must be >= 0, got %v", ErrConfig, cfg.Rate)
	}
	if cfg.Symbols < 0 || cfg.History < 0 || cfg.MaxStreams < 0 || cfg.QueueBytes < 0 || cfg.WeightPerMinute < 0 {
		return cfg, fmt.Errorf("%w: negative Symbols, History, MaxStreams or QueueBytes", ErrConfig)
	}
	if len(cfg.Replay) == 0 && cfg.Symbols == 0 {
		cfg.Symbols = 10
	}
	if cfg.PingEvery <= 0 {
		cfg.PingEvery = 3 * time.Minute
		if spot {
			cfg.PingEvery = 20 * time.Second
		}
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = 10 * time.Minute
		if spot {
			cfg.PongTimeout = time.Minute
		}
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 1024
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 2 * time.Second
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = 4 << 20
	}
	if cfg.SlowTimeout <= 0 {
		cfg.SlowTimeout = 5 * time.Second
	}
	if cfg.Faults.HasSeed {
		cfg.Seed = cfg.Faults.Seed
	}
	return cfg, nil
}
