package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klagg/klagg/parse"
)

// ClientConfig configures a Client. Zero fields take DefaultClientConfig's
// values for Market.
type ClientConfig struct {
	Market          Market
	BaseURL         string       // scheme://host[:port]; default DefaultEndpoints(Market).REST
	HTTP            *http.Client // default: a client with a 30 s timeout
	WeightPerMinute int          // IP weight limit; the client stays under 90% of it
	MaxRetries      int          // retries of transient failures per request (default 5; <0: none)
	MinBackoff      time.Duration
	MaxBackoff      time.Duration
	UserAgent       string // default "klagg"
	MaxBody         int64  // largest response body accepted (default 64 MiB)
}

// DefaultClientConfig returns the configuration for Binance's REST API of m.
func DefaultClientConfig(m Market) ClientConfig {
	return ClientConfig{
		Market:          m,
		BaseURL:         DefaultEndpoints(m).REST,
		HTTP:            &http.Client{Timeout: 30 * time.Second},
		WeightPerMinute: DefaultLimits(m).WeightPerMinute,
		MaxRetries:      5,
		MinBackoff:      500 * time.Millisecond,
		MaxBackoff:      30 * time.Second,
		UserAgent:       "klagg",
		MaxBody:         64 << 20,
	}
}

// ClientStats are a Client's counters.
type ClientStats struct {
	Requests        uint64 // HTTP requests sent, retries included
	Retries         uint64 // requests repeated after a transient failure, 429 or 418
	Status429       uint64
	Status418       uint64
	TransientErrors uint64 // 5xx and network errors
	Rejected        uint64 // other 4xx
	UsedWeight      int64  // X-MBX-USED-WEIGHT-1M of the last response carrying it
	WaitedForWeight uint64 // waits before a request because of the weight limit or a ban
}

// Client is a Binance REST client for market data. Safe for concurrent use:
// the weight budget and an IP ban (418) are shared by all its requests.
type Client struct {
	cfg      ClientConfig
	paths    restPaths
	maxLimit int // klines limit maximum

	mu          sync.Mutex
	used        int   // weight used in minute usedMinute, reservations included
	usedMinute  int64 // Unix minute that used belongs to
	pausedUntil time.Time

	now   func() time.Time
	sleep func(context.Context, time.Duration) error
	rand  func(int64) int64 // backoff jitter; nil: math/rand/v2

	requests, retries, s429, s418, transient, rejected, waited atomic.Uint64
	usedWeight                                                 atomic.Int64
}

type restPaths struct{ exchangeInfo, aggTrades, klines, time string }

// NewClient returns a client; it does no I/O.
func NewClient(cfg ClientConfig) *Client {
	d := DefaultClientConfig(cfg.Market)
	if cfg.BaseURL == "" {
		cfg.BaseURL = d.BaseURL
	}
	for len(cfg.BaseURL) > 0 && cfg.BaseURL[len(cfg.BaseURL)-1] == '/' {
		cfg.BaseURL = cfg.BaseURL[:len(cfg.BaseURL)-1]
	}
	if cfg.HTTP == nil {
		cfg.HTTP = d.HTTP
	}
	if cfg.WeightPerMinute <= 0 {
		cfg.WeightPerMinute = d.WeightPerMinute
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = d.MaxRetries
	}
	cfg.MaxRetries = max(cfg.MaxRetries, 0)
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = d.MinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = d.MaxBackoff
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = d.UserAgent
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = d.MaxBody
	}
	c := &Client{cfg: cfg, now: time.Now, sleep: Sleep}
	if cfg.Market == Spot {
		c.paths = restPaths{"/api/v3/exchangeInfo", "/api/v3/aggTrades", "/api/v3/klines", "/api/v3/time"}
		c.maxLimit = 1000
	} else {
		c.paths = restPaths{"/fapi/v1/exchangeInfo", "/fapi/v1/aggTrades", "/fapi/v1/klines", "/fapi/v1/time"}
		c.maxLimit = 1500
	}
	return c
}

// Request weights, from Binance's docs.
func (c *Client) weightExchangeInfo() int {
	if c.cfg.Market == Spot {
		return 20
	}
	return 1
}

func (c *Client) weightAggTrades() int {
	if c.cfg.Market == Spot {
		return 4
	}
	return 20
}

func (c *Client) weightKlines(limit int) int { return KlinesWeight(c.cfg.Market, limit) }

// KlinesWeight is the request weight Binance charges a klines request of limit
// rows (0: the server's default, 500) on market m.
func KlinesWeight(m Market, limit int) int {
	if m == Spot {
		return 2
	}
	switch {
	case limit == 0: // server default 500
		return 5
	case limit < 100:
		return 1
	case limit < 500:
		return 2
	case limit <= 1000:
		return 5
	}
	return 10
}

// ExchangeInfo returns the symbols of the market.
func (c *Client) ExchangeInfo(ctx context.Context) ([]parse.SymbolInfo, error) {
	body, _, err := c.get(ctx, c.paths.exchangeInfo, nil, c.weightExchangeInfo())
	if err != nil {
		return nil, fmt.Errorf("cannot get exchangeInfo: %w", err)
	}
	infos, err := parse.ExchangeInfoSymbols(body)
	if err != nil {
		return nil, fmt.Errorf("cannot decode exchangeInfo: %w: %w", ErrBadResponse, err)
	}
	return infos, nil
}

// AggTrades appends to dst up to limit (1..1000; 0 means 1000) aggTrades of
// symbol with ids from fromID on (fromID < 0: the most recent ones), in id
// order, decoded with symbol index sym. EventTime is set to TradeTime.
func (c *Client) AggTrades(ctx context.Context, symbol string, sym uint32, fromID int64, limit int, dst []parse.Trade) ([]parse.Trade, error) {
	if limit == 0 {
		limit = 1000
	}
	if symbol == "" || limit < 0 || limit > 1000 {
		return dst, fmt.Errorf("cannot get aggTrades for %q from %d with limit %d: %w", symbol, fromID, limit, ErrBadRequest)
	}
	q := url.Values{"symbol": {symbol}, "limit": {strconv.Itoa(limit)}}
	if fromID >= 0 {
		q.Set("fromId", strconv.FormatInt(fromID, 10))
	}
	body, _, err := c.get(ctx, c.paths.aggTrades, q, c.weightAggTrades())
	if err != nil {
		return dst, fmt.Errorf("cannot get aggTrades for %s from %d: %w", symbol, fromID, err)
	}
	out, err := parse.DecodeRESTAggTrades(dst, body, sym)
	if err != nil {
		return dst, fmt.Errorf("cannot decode aggTrades for %s from %d: %w: %w", symbol, fromID, ErrBadResponse, err)
	}
	return out, nil
}

// RESTKline is one kline of a REST klines response, numbers kept as Binance
// printed them.
type RESTKline struct {
	OpenTime            int64 // Unix ms
	Open                string
	High                string
	Low                 string
	Close               string
	Volume              string
	CloseTime           int64 // Unix ms, OpenTime + interval - 1
	QuoteVolume         string
	Trades              int64
	TakerBuyVolume      string
	TakerBuyQuoteVolume string
}

// Klines returns the klines of symbol at interval ("1m", "1h", ...) with open
// times in [startTime, endTime] (Unix ms; 0 leaves a bound out); limit 0 uses
// the server's default (500), the maximum is 1000 on spot and 1500 on futures.
func (c *Client) Klines(ctx context.Context, symbol, interval string, startTime, endTime int64, limit int) ([]RESTKline, error) {
	if symbol == "" || interval == "" || limit < 0 || limit > c.maxLimit {
		return nil, fmt.Errorf("cannot get %s klines for %q with limit %d: %w", interval, symbol, limit, ErrBadRequest)
	}
	q := url.Values{"symbol": {symbol}, "interval": {interval}}
	if startTime > 0 {
		q.Set("startTime", strconv.FormatInt(startTime, 10))
	}
	if endTime > 0 {
		q.Set("endTime", strconv.FormatInt(endTime, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	body, _, err := c.get(ctx, c.paths.klines, q, c.weightKlines(limit))
	if err != nil {
		return nil, fmt.Errorf("cannot get %s klines for %s from %d: %w", interval, symbol, startTime, err)
	}
	klines, err := decodeKlines(body)
	if err != nil {
		return nil, fmt.Errorf("cannot decode %s klines for %s from %d: %w", interval, symbol, startTime, err)
	}
	return klines, nil
}

func decodeKlines(body []byte) ([]RESTKline, error) {
	var rows [][]json.RawMessage
	if err := json.Unmarshal(body, &rows); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	out := make([]RESTKline, len(rows))
	for i, row := range rows {
		if len(row) < 11 {
			return nil, fmt.Errorf("kline %d has %d fields, want at least 11: %w", i, len(row), ErrBadResponse)
		}
		k := &out[i]
		ints := []struct {
			dst *int64
			raw json.RawMessage
		}{{&k.OpenTime, row[0]}, {&k.CloseTime, row[6]}, {&k.Trades, row[8]}}
		for _, f := range ints {
			if err := json.Unmarshal(f.raw, f.dst); err != nil {
				return nil, fmt.Errorf("kline %d: %w: %w", i, ErrBadResponse, err)
			}
		}
		strs := []struct {
			dst *string
			raw json.RawMessage
		}{
			{&k.Open, row[1]}, {&k.High, row[2]}, {&k.Low, row[3]}, {&k.Close, row[4]}, {&k.Volume, row[5]},
			{&k.QuoteVolume, row[7]}, {&k.TakerBuyVolume, row[9]}, {&k.TakerBuyQuoteVolume, row[10]},
		}
		for _, f := range strs {
			if err := json.Unmarshal(f.raw, f.dst); err != nil {
				return nil, fmt.Errorf("kline %d: %w: %w", i, ErrBadResponse, err)
			}
		}
	}
	return out, nil
}

// ServerTime returns Binance's clock (Unix ms) and the round-trip time of the
// successful request; the server read its clock about rtt/2 before the
// response arrived.
func (c *Client) ServerTime(ctx context.Context) (serverMillis int64, rtt time.Duration, err error) {
	body, rtt, err := c.get(ctx, c.paths.time, nil, 1)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot get server time: %w", err)
	}
	var r struct {
		ServerTime *int64 `json:"serverTime"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.ServerTime == nil {
		return 0, 0, fmt.Errorf("cannot decode server time %.64q: %w", body, ErrBadResponse)
	}
	return *r.ServerTime, rtt, nil
}

// Stats returns the counters; safe for concurrent use.
func (c *Client) Stats() ClientStats {
	return ClientStats{
		Requests:        c.requests.Load(),
		Retries:         c.retries.Load(),
		Status429:       c.s429.Load(),
		Status418:       c.s418.Load(),
		TransientErrors: c.transient.Load(),
		Rejected:        c.rejected.Load(),
		UsedWeight:      c.usedWeight.Load(),
		WaitedForWeight: c.waited.Load(),
	}
}

// weightMargin is the time past a minute boundary the client waits before
// trusting that Binance's per-minute counter has reset (clock skew).
const weightMargin = 500 * time.Millisecond

// acquire waits until a request of weight w fits in the budget (90% of
// WeightPerMinute per calendar minute) and no ban is in force, then reserves
// w.
func (c *Client) acquire(ctx context.Context, w int) error {
	budget := max(c.cfg.WeightPerMinute*9/10, 1)
	counted := false
	for {
		c.mu.Lock()
		now := c.now()
		var d time.Duration
		if now.Before(c.pausedUntil) {
			d = c.pausedUntil.Sub(now)
		} else {
			minute := now.Unix() / 60
			if minute != c.usedMinute {
				c.usedMinute, c.used = minute, 0
			}
			if c.used > 0 && c.used+w > budget {
				d = now.Truncate(time.Minute).Add(time.Minute + weightMargin).Sub(now)
			} else {
				c.used += w
			}
		}
		c.mu.Unlock()
		if d == 0 {
			return nil
		}
		if !counted {
			counted = true
			c.waited.Add(1)
		}
		if err := c.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// noteUsedWeight takes the X-MBX-USED-WEIGHT-1M header into account: it
// counts every client of the IP, so it can only raise the local estimate.
func (c *Client) noteUsedWeight(h http.Header) {
	v := h.Get("X-Mbx-Used-Weight-1m")
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return
	}
	c.usedWeight.Store(int64(n))
	c.mu.Lock()
	if minute := c.now().Unix() / 60; minute == c.usedMinute {
		c.used = max(c.used, n)
	} else {
		c.usedMinute, c.used = minute, n
	}
	c.mu.Unlock()
}

// pause makes every request of the client wait until until (429, 418 ban).
func (c *Client) pause(until time.Time) {
	c.mu.Lock()
	if until.After(c.pausedUntil) {
		c.pausedUntil = until
	}
	c.mu.Unlock()
}

// retryAfter parses Retry-After (seconds); ok is false if absent or invalid.
func retryAfter(h http.Header) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// outcome classifies one attempt of a request.
type outcome uint8

const (
	outcomeOK        outcome = iota
	outcomeFatal             // not retried: 4xx other than 429/418, bad URL, oversized body
	outcomeTransient         // 5xx or network error: back off and retry
	outcomeThrottled         // 429 or 418: every request of the client pauses, then retry
)

// get performs one GET with weight accounting and retries; it returns the body
// of the 2xx response and that request's round-trip time.
func (c *Client) get(ctx context.Context, path string, q url.Values, weight int) ([]byte, time.Duration, error) {
	u := c.cfg.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	b := Backoff{Min: c.cfg.MinBackoff, Max: c.cfg.MaxBackoff, rand: c.rand}
	for attempt := 0; ; attempt++ {
		if err := c.acquire(ctx, weight); err != nil {
			return nil, 0, err
		}
		body, rtt, out, pause, err := c.do(ctx, u)
		switch {
		case out == outcomeOK:
			return body, rtt, nil
		case ctx.Err() != nil:
			return nil, 0, ctx.Err()
		case out == outcomeFatal:
			return nil, 0, err
		}
		if pause < 0 {
			pause = b.Next()
		}
		if out == outcomeThrottled {
			// Shared, even if this request gives up: Binance bans IPs that
			// keep sending after a 429, and a 418 ban covers the whole IP.
			c.pause(c.now().Add(pause))
		}
		if attempt >= c.cfg.MaxRetries {
			return nil, 0, fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, attempt+1, err)
		}
		c.retries.Add(1)
		if out == outcomeThrottled {
			continue // acquire waits the pause out
		}
		if err := c.sleep(ctx, pause); err != nil {
			return nil, 0, err
		}
	}
}

// do sends one request and classifies the result. pause is the server's
// Retry-After, or -1 when it gave none.
func (c *Client) do(ctx context.Context, u string) (body []byte, rtt time.Duration, out outcome, pause time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, outcomeFatal, 0, fmt.Errorf("cannot build request: %w", err)
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	c.requests.Add(1)
	start := time.Now()
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		c.transient.Add(1)
		return nil, 0, outcomeTransient, -1, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBody+1))
	rtt = time.Since(start)
	c.noteUsedWeight(resp.Header)
	if err != nil {
		c.transient.Add(1)
		return nil, 0, outcomeTransient, -1, fmt.Errorf("cannot read response body: %w", err)
	}
	if int64(len(body)) > c.cfg.MaxBody {
		return nil, 0, outcomeFatal, 0, fmt.Errorf("HTTP %d response body over %d bytes: %w", resp.StatusCode, c.cfg.MaxBody, ErrBadResponse)
	}
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return body, rtt, outcomeOK, 0, nil
	case s == http.StatusTooManyRequests:
		c.s429.Add(1)
		d, ok := retryAfter(resp.Header)
		if !ok {
			d = -1
		}
		return nil, 0, outcomeThrottled, d, apiError(s, body)
	case s == http.StatusTeapot:
		c.s418.Add(1)
		d, ok := retryAfter(resp.Header)
		if !ok {
			d = 2 * time.Minute // Binance's shortest ban
		}
		return nil, 0, outcomeThrottled, d, apiError(s, body)
	case s >= 500:
		c.transient.Add(1)
		return nil, 0, outcomeTransient, -1, fmt.Errorf("HTTP %d: %.128s", s, body)
	default:
		c.rejected.Add(1)
		return nil, 0, outcomeFatal, 0, apiError(s, body)
	}
}

// apiError builds an APIError from Binance's {"code":..,"msg":..} body, or
// from the start of the raw body when it is not one.
func apiError(status int, body []byte) *APIError {
	var r struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := json.Unmarshal(body, &r); err == nil && (r.Code != 0 || r.Msg != "") {
		return &APIError{Status: status, Code: r.Code, Msg: r.Msg}
	}
	msg := string(body)
	if len(msg) > 128 {
		msg = msg[:128]
	}
	return &APIError{Status: status, Msg: msg}
}
