package feed

import (
	"time"

	"github.com/klagg/klagg/exchange"
)

// Config configures a Session. Start from DefaultConfig.
type Config struct {
	Market    exchange.Market
	Endpoints exchange.Endpoints
	// Symbols restricts the feed to these symbols; empty follows every tradable one
	// (futures: PERPETUAL contracts in TRADING status; spot: TRADING).
	Symbols []string
	// QuoteAssets, when Symbols is empty, keeps only symbols quoted in these.
	QuoteAssets []string
	// StreamsPerConn caps the streams of one connection (default: exchange.DefaultLimits).
	StreamsPerConn int
	// Conns is the number of connection slots at start; 0 sizes them for the
	// universe plus one spare. Slots are added when listings fill them.
	Conns int
	// Refresh is how often exchangeInfo is read again for listings and delistings.
	Refresh time.Duration
	// MaxDelist is the share of the followed symbols one exchangeInfo read may
	// delist at once; a read that drops more is ignored (logged) until
	// DelistConfirm reads in a row agree, so one bad answer cannot empty the feed.
	MaxDelist     float64
	DelistConfirm int
	// TimeSync is how often the exchange's clock is read.
	TimeSync time.Duration
	// Verify is how often one 24 h ticker read (one request for every symbol)
	// checks each symbol's last trade id against the last trade received: a
	// quiet symbol whose last trades were lost in flight is found within Verify
	// plus SuspectDelay.
	Verify time.Duration
	// TickerLag: a ticker read sent at least this long after a connection took
	// effect verifies that its symbols missed nothing while it was down.
	TickerLag time.Duration
	// SuspectDelay is how long a trade the ticker reported may take to arrive on
	// the stream before it counts as missing.
	SuspectDelay time.Duration
	// Stale is how long a connection may stay silent before a ticker read is
	// asked for; if its symbols traded meanwhile, the connection is replaced.
	Stale time.Duration
	// PingEvery is how often the client pings the server; a ping without a pong
	// after PongTimeout means a dead connection, replaced without asking REST.
	PingEvery, PongTimeout time.Duration
	// Rotate is the age at which a connection is replaced, before Binance's 24 h cut.
	Rotate time.Duration
	// Overlap is how long a rotated connection is still read after its successor
	// is subscribed, so nothing falls between the two.
	Overlap time.Duration
	// Poll is how often an idle reader wakes to apply REST answers and changes.
	Poll time.Duration
	// AckTimeout is how long a SUBSCRIBE may wait for its reply before the
	// connection is replaced.
	AckTimeout time.Duration
	// Workers is the number of goroutines sending REST requests; the weight
	// budget, not the workers, bounds the rate.
	Workers int
	// FillRetry paces the retries of a fill REST answers short (REST lags the
	// stream by a moment); after FillTries short answers and at least BogusAfter,
	// a held trade whose id REST never confirms is dropped as bogus.
	FillRetry  time.Duration
	FillTries  int
	BogusAfter time.Duration
	// MaxHold bounds how long a symbol's klines wait for its missing trades
	// (REST budget, an exchange outage): then they close, and what REST brings
	// later arrives as corrections. Keep the pipeline's correction history
	// (shard.Config.Lateness) longer.
	MaxHold time.Duration
	// Resume, by symbol, is where a restarted daemon picks each symbol up (from
	// its store): the trades after are fetched from REST, so klines are exact
	// across the restart. Symbols without one start afresh.
	Resume map[string]Resume
	// Status is how often a status line is logged; 0 turns it off.
	Status  time.Duration
	Conn    exchange.ConnConfig
	Client  exchange.ClientConfig
	Backoff exchange.Backoff
}

// DefaultConfig returns the daemon's defaults for a market.
func DefaultConfig(m exchange.Market) Config {
	// Binance pings every 3 min (futures) or 20 s (spot); our pings need no
	// REST and find a dead connection in under a minute either way.
	return Config{
		Market:        m,
		Endpoints:     exchange.DefaultEndpoints(m),
		Refresh:       time.Minute,
		MaxDelist:     0.1,
		DelistConfirm: 3,
		TimeSync:      30 * time.Second,
		Verify:        time.Minute,
		TickerLag:     2 * time.Second,
		SuspectDelay:  3 * time.Second,
		Stale:         30 * time.Second,
		PingEvery:     30 * time.Second,
		PongTimeout:   20 * time.Second,
		Rotate:        exchange.DefaultLimits(m).MaxConnAge,
		Overlap:       time.Second,
		Poll:          50 * time.Millisecond,
		AckTimeout:    10 * time.Second,
		Workers:       2,
		FillRetry:     200 * time.Millisecond,
		FillTries:     5,
		BogusAfter:    5 * time.Second,
		MaxHold:       5 * time.Minute,
		Status:        10 * time.Second,
		Conn:          exchange.DefaultConnConfig(m),
		Client:        exchange.DefaultClientConfig(m),
		Backoff:       exchange.Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second},
	}
}
