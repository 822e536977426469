package exchange

import (
	"fmt"
	"strings"
	"time"
)

// Market is a Binance market: USD-M futures or spot.
type Market uint8

// Markets.
const (
	Futures Market = iota // USD-M futures (fstream / fapi)
	Spot                  // spot (stream / api)
)

// String returns "futures" or "spot".
func (m Market) String() string {
	switch m {
	case Futures:
		return "futures"
	case Spot:
		return "spot"
	}
	return fmt.Sprintf("Market(%d)", uint8(m))
}

// ParseMarket is the inverse of String; it accepts any letter case.
func ParseMarket(s string) (Market, error) {
	switch strings.ToLower(s) {
	case "futures":
		return Futures, nil
	case "spot":
		return Spot, nil
	}
	return 0, fmt.Errorf("cannot parse market %q: %w", s, ErrUnknownMarket)
}

// Endpoints are the base URLs (scheme://host[:port], no path) of a market.
type Endpoints struct {
	WS   string // e.g. wss://fstream.binance.com
	REST string // e.g. https://fapi.binance.com
}

// DefaultEndpoints returns Binance's production endpoints for m.
func DefaultEndpoints(m Market) Endpoints {
	if m == Spot {
		return Endpoints{WS: "wss://stream.binance.com:9443", REST: "https://api.binance.com"}
	}
	return Endpoints{WS: "wss://fstream.binance.com", REST: "https://fapi.binance.com"}
}

// StreamName returns the aggTrade stream of symbol: "BTCUSDT" -> "btcusdt@aggTrade".
func StreamName(symbol string) string {
	return strings.ToLower(symbol) + "@aggTrade"
}

// CombinedURL returns the combined-stream URL for streams. Futures market
// streams live under /market since 2026-04-23: a futures connection without it
// receives no aggTrades and no error.
func CombinedURL(m Market, wsBase string, streams []string) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(wsBase, "/"))
	if m == Futures {
		b.WriteString("/market")
	}
	b.WriteString("/stream?streams=")
	for i, s := range streams {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s)
	}
	return b.String()
}

// RawURL returns the raw-stream URL, to which streams are added with SUBSCRIBE.
func RawURL(m Market, wsBase string) string {
	base := strings.TrimRight(wsBase, "/")
	if m == Futures {
		return base + "/market/ws"
	}
	return base + "/ws"
}

// Limits are the limits Binance enforces on one IP, as klagg applies them.
type Limits struct {
	MaxStreamsPerConn int           // streams on one WebSocket connection
	MessagesPerSecond int           // messages the client may send per connection per second
	WeightPerMinute   int           // REST request weight per minute
	MaxConnAge        time.Duration // reconnect before Binance's 24 h cut
}

// DefaultLimits returns klagg's limits for m. Futures allows 1024 streams per
// connection by the docs; klagg uses 200 so one reconnect moves fewer streams
// and one connection's traffic stays moderate.
func DefaultLimits(m Market) Limits {
	if m == Spot {
		return Limits{MaxStreamsPerConn: 1024, MessagesPerSecond: 5, WeightPerMinute: 6000, MaxConnAge: 23*time.Hour + 30*time.Minute}
	}
	return Limits{MaxStreamsPerConn: 200, MessagesPerSecond: 10, WeightPerMinute: 2400, MaxConnAge: 23*time.Hour + 30*time.Minute}
}

// MaxConnAttempts and ConnAttemptWindow are Binance's limit on WebSocket
// connection attempts per IP; NewDialLimiter(MaxConnAttempts, ConnAttemptWindow).
const (
	MaxConnAttempts   = 300
	ConnAttemptWindow = 5 * time.Minute
)
