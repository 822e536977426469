package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/klagg/klagg/parse"
)

// LastTrade is what the 24 h ticker says of a symbol's newest trade.
type LastTrade struct {
	// TradeID is the id of the symbol's last trade: the "l" (last trade id) of its
	// newest aggTrade, not an aggTrade id. -1 when the symbol did not trade in 24 h.
	TradeID int64
	// CloseTime is the end of the ticker's window (Unix ms).
	CloseTime int64
}

func (c *Client) tickerPath() string {
	if c.cfg.Market == Spot {
		return "/api/v3/ticker/24hr"
	}
	return "/fapi/v1/ticker/24hr"
}

// WeightLastTrades is the request weight of LastTrades on m: one request for
// every symbol of the market.
func WeightLastTrades(m Market) int {
	if m == Spot {
		return 80
	}
	return 40
}

// LastTrades returns, for every symbol of the market, its last trade id from one
// all-symbols GET ticker/24hr request: the cheap way to learn which symbols
// traded while a connection was down (compare with the "l" of the last aggTrade
// received).
func (c *Client) LastTrades(ctx context.Context) (map[string]LastTrade, error) {
	body, _, err := c.get(ctx, c.tickerPath(), nil, WeightLastTrades(c.cfg.Market))
	if err != nil {
		return nil, fmt.Errorf("cannot get the 24h tickers: %w", err)
	}
	var rows []struct {
		Symbol    string `json:"symbol"`
		LastID    *int64 `json:"lastId"`
		CloseTime int64  `json:"closeTime"`
	}
	if err := json.Unmarshal(body, &rows); err != nil {
		return nil, fmt.Errorf("cannot decode the 24h tickers: %w: %w", ErrBadResponse, err)
	}
	out := make(map[string]LastTrade, len(rows))
	for _, r := range rows {
		if r.Symbol == "" || r.LastID == nil {
			continue
		}
		out[r.Symbol] = LastTrade{TradeID: *r.LastID, CloseTime: r.CloseTime}
	}
	return out, nil
}

// WeightAggTrades is the request weight of one aggTrades request on m.
func WeightAggTrades(m Market) int {
	if m == Spot {
		return 4
	}
	return 20
}

// AggTradesSince appends to dst up to limit (1..1000) aggTrades of symbol made at
// or after startTime (Unix ms), oldest first, decoded with symbol index sym; page
// on with AggTrades from the last id + 1.
func (c *Client) AggTradesSince(ctx context.Context, symbol string, sym uint32, startTime int64, limit int, dst []parse.Trade) ([]parse.Trade, error) {
	if symbol == "" || limit < 1 || limit > 1000 || startTime < 0 {
		return dst, fmt.Errorf("cannot get aggTrades for %q since %d with limit %d: %w", symbol, startTime, limit, ErrBadRequest)
	}
	q := url.Values{"symbol": {symbol}, "limit": {strconv.Itoa(limit)}, "startTime": {strconv.FormatInt(startTime, 10)}}
	body, _, err := c.get(ctx, c.paths.aggTrades, q, c.weightAggTrades())
	if err != nil {
		return dst, fmt.Errorf("cannot get aggTrades for %s since %d: %w", symbol, startTime, err)
	}
	out, err := parse.DecodeRESTAggTrades(dst, body, sym)
	if err != nil {
		return dst, fmt.Errorf("cannot decode aggTrades for %s since %d: %w: %w", symbol, startTime, ErrBadResponse, err)
	}
	return out, nil
}
