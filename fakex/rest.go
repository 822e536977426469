package fakex

import (
	"encoding/json"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// weightWindow is the REQUEST_WEIGHT budget: a fixed window per minute of the
// wall clock (the data clock of a fast replay would reset it too often to test
// anything), like Binance's X-MBX-USED-WEIGHT-1M.
type weightWindow struct {
	mu     sync.Mutex
	minute int64
	used   int
}

// take adds w and returns the weight used this minute and the seconds left in it.
func (ww *weightWindow) take(w int, now time.Time) (used int, left int) {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	if m := now.Unix() / 60; m != ww.minute {
		ww.minute, ww.used = m, 0
	}
	ww.used += w
	return ww.used, int(60 - now.Unix()%60)
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	b, _ := json.Marshal(struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}{code, msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// weight is the request weight of endpoint on the market, as Binance's docs give
// it (klines on futures depends on limit; the ticker read for every symbol is
// the expensive one).
func (s *Server) weight(endpoint string, q map[string][]string) int {
	switch {
	case endpoint == "aggTrades" && s.spot:
		return 4
	case endpoint == "aggTrades":
		return 20
	case endpoint == "exchangeInfo" && s.spot:
		return 20
	case endpoint == "ticker/24hr" && len(q["symbol"]) > 0:
		return 1
	case endpoint == "ticker/24hr" && s.spot:
		return 80
	case endpoint == "ticker/24hr":
		return 40
	case endpoint == "klines" && s.spot:
		return 2
	case endpoint == "klines":
		limit, _ := intParam(q, "limit", 500)
		switch {
		case limit < 100:
			return 1
		case limit < 500:
			return 2
		case limit <= 1000:
			return 5
		}
		return 10
	}
	return 1
}

// serveREST answers the REST endpoints under /fapi/v1/ (futures) or /api/v3/ (spot).
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request) {
	prefix := "/fapi/v1/"
	if s.spot {
		prefix = "/api/v3/"
	}
	endpoint, ok := strings.CutPrefix(r.URL.Path, prefix)
	switch endpoint {
	case "aggTrades", "klines", "time", "exchangeInfo", "ping", "ticker/24hr":
	default:
		ok = false
	}
	if !ok {
		s.countREST("unknown", http.StatusNotFound)
		writeError(w, http.StatusNotFound, -1000, "Unknown endpoint.")
		return
	}
	limit := 2400
	if s.spot {
		limit = 6000
	}
	if s.cfg.WeightPerMinute > 0 {
		limit = s.cfg.WeightPerMinute
	}
	q := r.URL.Query()
	now := time.Now()
	used, left := s.weights.take(s.weight(endpoint, q), now)
	w.Header().Set("X-MBX-USED-WEIGHT-1M", strconv.Itoa(used))
	if used > limit {
		w.Header().Set("Retry-After", strconv.Itoa(left))
		s.countREST(endpoint, http.StatusTooManyRequests)
		writeError(w, http.StatusTooManyRequests, -1003, "Too many requests; current limit is "+strconv.Itoa(limit)+" request weight per 1 MINUTE.")
		return
	}
	if n := s.cfg.Faults.RateLimit; n > 0 && s.restSeq.Add(1)%n == 0 {
		s.fault("ratelimit")
		w.Header().Set("Retry-After", "1")
		s.countREST(endpoint, http.StatusTooManyRequests)
		writeError(w, http.StatusTooManyRequests, -1003, "Too many requests (injected).")
		return
	}
	var body []byte
	status := http.StatusOK
	switch endpoint {
	case "ping":
		body = []byte("{}")
	case "time":
		body = strconv.AppendInt([]byte(`{"serverTime":`), s.Clock(), 10)
		body = append(body, '}')
	case "exchangeInfo":
		body = s.exchangeInfo()
	case "aggTrades":
		body, status = s.aggTrades(q)
	case "klines":
		body, status = s.klines(q)
	case "ticker/24hr":
		body, status = s.ticker(q)
	}
	s.countREST(endpoint, status)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) countREST(endpoint string, status int) {
	s.stats.mu.Lock()
	s.stats.rest[RESTKey{endpoint, status}]++
	s.stats.mu.Unlock()
}

func errorBody(code int, msg string) []byte {
	b, _ := json.Marshal(struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}{code, msg})
	return b
}

// intParam reads an optional integer parameter; def when absent.
func intParam(q map[string][]string, name string, def int64) (int64, []byte) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorBody(-1100, "Illegal characters found in parameter '"+name+"'; legal range is '^[0-9]{1,20}$'.")
	}
	return n, nil
}

// lookup finds the symbol parameter; s.mu must not be held.
func (s *Server) lookupParams(q map[string][]string) (*symbol, []byte) {
	name := ""
	if vs := q["symbol"]; len(vs) > 0 {
		name = vs[0]
	}
	if name == "" {
		return nil, errorBody(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
	}
	sym, ok := s.syms[name]
	if !ok || sym.status == statusUnlisted {
		return nil, errorBody(-1121, "Invalid symbol.")
	}
	return sym, nil
}

func (s *Server) aggTrades(q map[string][]string) ([]byte, int) {
	fromID, e1 := intParam(q, "fromId", -1)
	start, e2 := intParam(q, "startTime", -1)
	end, e3 := intParam(q, "endTime", -1)
	limit, e4 := intParam(q, "limit", 500)
	for _, e := range [][]byte{e1, e2, e3, e4} {
		if e != nil {
			return e, http.StatusBadRequest
		}
	}
	if limit < 1 || limit > 1000 {
		return errorBody(-1130, "Data sent for parameter 'limit' is not valid."), http.StatusBadRequest
	}
	if fromID >= 0 {
		start = -1 // fromId wins, as on Binance when both are sent
	}
	s.mu.RLock()
	sym, errb := s.lookupParams(q)
	if errb != nil {
		s.mu.RUnlock()
		return errb, http.StatusBadRequest
	}
	trades := sym.query(nil, fromID, start, end, int(limit))
	s.mu.RUnlock()
	out := make([]byte, 0, 16+len(trades)*128)
	out = append(out, '[')
	for i := range trades {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendRESTTrade(out, &trades[i], s.spot)
	}
	return append(out, ']'), http.StatusOK
}

// klineIntervals are the intervals klines serves, by length (1s on spot only);
// 1w and 1M follow the calendar (see grid).
var klineIntervals = map[string]int64{
	"1m": 60e3, "3m": 180e3, "5m": 300e3, "15m": 900e3, "30m": 1800e3, "1h": 3600e3, "2h": 7200e3,
	"4h": 14400e3, "6h": 21600e3, "8h": 28800e3, "12h": 43200e3, "1d": day, "3d": 3 * day,
	"1w": 7 * day, "1M": monthly,
}

// monthly marks 1M in klineIntervals.
const monthly = -1

// grid is the period grid of one interval as Binance draws it, in UTC: fixed
// lengths from the Unix epoch, but 3d from 1970-01-02 (BTCUSDT's first 3d
// kline opened 2017-08-17, day 17,395 = 1 mod 3), weeks from Monday 00:00 and
// months from their first day. It is written here apart from the daemon's
// own (package shard), so that fakex checks it.
type grid int64

const (
	day         = 86400e3
	epochMonday = 4 * day // 1970-01-05, the first Monday
)

func (g grid) open(t int64) int64 {
	switch g {
	case monthly:
		u := time.UnixMilli(t).UTC()
		return time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	case 7 * day:
		return t - floorMod(t-epochMonday, int64(g))
	case 3 * day:
		return t - floorMod(t-day, int64(g))
	}
	return t - floorMod(t, int64(g))
}

// next is the open time of the period after the one opening at open.
func (g grid) next(open int64) int64 {
	if g == monthly {
		return time.UnixMilli(open).UTC().AddDate(0, 1, 0).UnixMilli()
	}
	return open + int64(g)
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// klines computes klines from the retained history: empty periods between
// trades repeat the previous close with zero volumes, as Binance does.
func (s *Server) klines(q map[string][]string) ([]byte, int) {
	length, ok := klineIntervals[first(q["interval"])]
	if first(q["interval"]) == "1s" && s.spot {
		length, ok = 1e3, true // spot only, as Binance
	}
	iv := grid(length)
	if !ok {
		return errorBody(-1120, "Invalid interval."), http.StatusBadRequest
	}
	start, e1 := intParam(q, "startTime", -1)
	end, e2 := intParam(q, "endTime", -1)
	limit, e3 := intParam(q, "limit", 500)
	for _, e := range [][]byte{e1, e2, e3} {
		if e != nil {
			return e, http.StatusBadRequest
		}
	}
	if limit < 1 || limit > 1500 {
		return errorBody(-1130, "Data sent for parameter 'limit' is not valid."), http.StatusBadRequest
	}
	s.mu.RLock()
	sym, errb := s.lookupParams(q)
	if errb != nil {
		s.mu.RUnlock()
		return errb, http.StatusBadRequest
	}
	if start < 0 {
		last := s.clock.Load()
		if sym.n > 0 {
			last = sym.at(sym.n - 1).time
		}
		start = iv.open(last)
		for range limit - 1 {
			start = iv.open(start - 1)
		}
	}
	trades := sym.query(nil, -1, iv.open(start), end, 1<<30)
	pd, qd := sym.pd, sym.qd
	s.mu.RUnlock()
	out := []byte{'['}
	var k kline
	have, n := false, int64(0)
scan:
	for i := range trades {
		t := &trades[i]
		open := iv.open(t.time)
		if !have {
			k, have = kline{open: open}, true
		}
		for k.open < open {
			out = k.append(out, iv, pd, qd, s.spot, n > 0)
			if n++; n >= limit {
				break scan
			}
			k = kline{open: iv.next(k.open), o: k.c, h: k.c, l: k.c, c: k.c}
		}
		k.add(t)
	}
	if have && n < limit {
		out = k.append(out, iv, pd, qd, s.spot, n > 0)
	}
	return append(out, ']'), http.StatusOK
}

// ticker answers GET ticker/24hr with what a zero-loss check needs of it: each
// symbol's last trade id (the "l" of its newest aggTrade, withheld ones
// included) and counts; prices are the last trade's.
func (s *Server) ticker(q map[string][]string) ([]byte, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	want := first(q["symbol"])
	if want != "" {
		if _, ok := s.syms[want]; !ok {
			return errorBody(-1121, "Invalid symbol."), http.StatusBadRequest
		}
	}
	now := s.Clock()
	out := []byte{'['}
	for _, sym := range s.order {
		if sym.status == statusUnlisted || (want != "" && sym.name != want) {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, `{"symbol":"`...)
		out = append(out, sym.name...)
		out = append(out, `","lastId":`...)
		last, firstID := int64(-1), int64(-1)
		if sym.produced > 0 {
			last = sym.lastTradeID
			firstID = sym.lastTradeID - sym.rawTrades + 1
		}
		out = strconv.AppendInt(out, last, 10)
		out = append(out, `,"firstId":`...)
		out = strconv.AppendInt(out, firstID, 10)
		out = append(out, `,"count":`...)
		out = strconv.AppendInt(out, sym.rawTrades, 10)
		out = append(out, `,"openTime":`...)
		out = strconv.AppendInt(out, now-86_400_000, 10)
		out = append(out, `,"closeTime":`...)
		out = strconv.AppendInt(out, max(now, sym.lastTime), 10)
		out = append(out, '}')
	}
	return append(out, ']'), http.StatusOK
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

type kline struct {
	open          int64
	o, h, l, c    uint64
	vol, takerVol uint64
	quote, takerQ big.Int // scale 1e16
	count         int64
}

func (k *kline) add(t *histTrade) {
	if k.count == 0 {
		k.o, k.h, k.l = t.price, t.price, t.price
	}
	k.h = max(k.h, t.price)
	k.l = min(k.l, t.price)
	k.c = t.price
	k.vol += t.qty
	var pq big.Int
	pq.Mul(new(big.Int).SetUint64(t.price), new(big.Int).SetUint64(t.qty))
	k.quote.Add(&k.quote, &pq)
	if !t.m {
		k.takerVol += t.qty
		k.takerQ.Add(&k.takerQ, &pq)
	}
	k.count += int64(t.span) + 1
}

// append prints k as Binance's kline array.
func (k *kline) append(dst []byte, iv grid, pd, qd uint8, spot, comma bool) []byte {
	if comma {
		dst = append(dst, ',')
	}
	qq := pd + qd // exact decimals of a price * quantity sum
	if spot {
		pd, qd, qq = 8, 8, 8
	}
	str := func(v uint64, d uint8) []byte {
		return append(append([]byte{'"'}, appendFixed8(nil, v, d)...), '"')
	}
	dst = strconv.AppendInt(append(dst, '['), k.open, 10)
	for _, v := range []uint64{k.o, k.h, k.l, k.c} {
		dst = append(append(dst, ','), str(v, pd)...)
	}
	dst = append(append(dst, ','), str(k.vol, qd)...)
	dst = strconv.AppendInt(append(dst, ','), iv.next(k.open)-1, 10)
	dst = append(append(dst, ',', '"'), bigFixed(&k.quote, qq)...)
	dst = strconv.AppendInt(append(dst, '"', ','), k.count, 10)
	dst = append(append(dst, ','), str(k.takerVol, qd)...)
	dst = append(append(dst, ',', '"'), bigFixed(&k.takerQ, qq)...)
	return append(dst, `","0"]`...)
}

// bigFixed prints v (scale 1e16) with digits decimals, truncating.
func bigFixed(v *big.Int, digits uint8) []byte {
	q := new(big.Int).Quo(v, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(16-digits)), nil))
	s := q.String()
	if digits == 0 {
		return []byte(s)
	}
	for len(s) <= int(digits) {
		s = "0" + s
	}
	return []byte(s[:len(s)-int(digits)] + "." + s[len(s)-int(digits):])
}

// quoteAssets are recognised quote suffixes, longest first.
var quoteAssets = []string{"FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "USD"}

func splitSymbol(name string) (base, quote string) {
	for _, q := range quoteAssets {
		if b, ok := strings.CutSuffix(name, q); ok && b != "" {
			return b, q
		}
	}
	return name, ""
}

type filter struct {
	FilterType string `json:"filterType"`
	MinPrice   string `json:"minPrice,omitempty"`
	MaxPrice   string `json:"maxPrice,omitempty"`
	TickSize   string `json:"tickSize,omitempty"`
	MinQty     string `json:"minQty,omitempty"`
	MaxQty     string `json:"maxQty,omitempty"`
	StepSize   string `json:"stepSize,omitempty"`
}

type futuresSymbol struct {
	Symbol             string   `json:"symbol"`
	Pair               string   `json:"pair"`
	ContractType       string   `json:"contractType"`
	DeliveryDate       int64    `json:"deliveryDate"`
	OnboardDate        int64    `json:"onboardDate"`
	Status             string   `json:"status"`
	BaseAsset          string   `json:"baseAsset"`
	QuoteAsset         string   `json:"quoteAsset"`
	MarginAsset        string   `json:"marginAsset"`
	PricePrecision     int      `json:"pricePrecision"`
	QuantityPrecision  int      `json:"quantityPrecision"`
	BaseAssetPrecision int      `json:"baseAssetPrecision"`
	QuotePrecision     int      `json:"quotePrecision"`
	UnderlyingType     string   `json:"underlyingType"`
	TriggerProtect     string   `json:"triggerProtect"`
	Filters            []filter `json:"filters"`
	OrderTypes         []string `json:"orderTypes"`
	TimeInForce        []string `json:"timeInForce"`
}

type spotSymbol struct {
	Symbol               string   `json:"symbol"`
	Status               string   `json:"status"`
	BaseAsset            string   `json:"baseAsset"`
	BaseAssetPrecision   int      `json:"baseAssetPrecision"`
	QuoteAsset           string   `json:"quoteAsset"`
	QuotePrecision       int      `json:"quotePrecision"`
	QuoteAssetPrecision  int      `json:"quoteAssetPrecision"`
	OrderTypes           []string `json:"orderTypes"`
	IcebergAllowed       bool     `json:"icebergAllowed"`
	IsSpotTradingAllowed bool     `json:"isSpotTradingAllowed"`
	Filters              []filter `json:"filters"`
	Permissions          []string `json:"permissions"`
}

type rateLimit struct {
	RateLimitType string `json:"rateLimitType"`
	Interval      string `json:"interval"`
	IntervalNum   int    `json:"intervalNum"`
	Limit         int    `json:"limit"`
}

// exchangeInfo prints the current universe. A delisted symbol stays with
// status SETTLING (futures) / BREAK (spot); a symbol a list fault has not
// listed yet is absent.
func (s *Server) exchangeInfo() []byte {
	unit := func(d uint8) string { return string(appendFixed8(nil, pow10[8-d], d)) }
	s.mu.RLock()
	var syms []any
	for _, sym := range s.order {
		if sym.status == statusUnlisted {
			continue
		}
		base, quote := splitSymbol(sym.name)
		filters := []filter{
			{FilterType: "PRICE_FILTER", MinPrice: unit(sym.pd), MaxPrice: "1000000", TickSize: unit(sym.pd)},
			{FilterType: "LOT_SIZE", MinQty: unit(sym.qd), MaxQty: "9000000", StepSize: unit(sym.qd)},
		}
		if s.spot {
			status := "TRADING"
			if sym.status == statusDelisted {
				status = "BREAK"
			}
			syms = append(syms, spotSymbol{Symbol: sym.name, Status: status, BaseAsset: base, BaseAssetPrecision: 8,
				QuoteAsset: quote, QuotePrecision: 8, QuoteAssetPrecision: 8, OrderTypes: []string{"LIMIT", "MARKET"},
				IcebergAllowed: true, IsSpotTradingAllowed: true, Filters: filters, Permissions: []string{"SPOT"}})
			continue
		}
		status := "TRADING"
		if sym.status == statusDelisted {
			status = "SETTLING"
		}
		syms = append(syms, futuresSymbol{Symbol: sym.name, Pair: sym.name, ContractType: "PERPETUAL",
			DeliveryDate: 4133404800000, OnboardDate: 1569398400000, Status: status, BaseAsset: base,
			QuoteAsset: quote, MarginAsset: quote, PricePrecision: int(sym.pd), QuantityPrecision: int(sym.qd),
			BaseAssetPrecision: 8, QuotePrecision: 8, UnderlyingType: "COIN", TriggerProtect: "0.0500",
			Filters: filters, OrderTypes: []string{"LIMIT", "MARKET"}, TimeInForce: []string{"GTC", "IOC", "FOK", "GTX"}})
	}
	s.mu.RUnlock()
	limits := []rateLimit{{"REQUEST_WEIGHT", "MINUTE", 1, 2400}, {"ORDERS", "MINUTE", 1, 1200}, {"ORDERS", "SECOND", 10, 300}}
	if s.spot {
		limits = []rateLimit{{"REQUEST_WEIGHT", "MINUTE", 1, 6000}, {"ORDERS", "SECOND", 10, 100},
			{"ORDERS", "DAY", 1, 200000}, {"RAW_REQUESTS", "MINUTE", 5, 61000}}
	}
	doc := struct {
		Timezone        string      `json:"timezone"`
		ServerTime      int64       `json:"serverTime"`
		FuturesType     string      `json:"futuresType,omitempty"`
		RateLimits      []rateLimit `json:"rateLimits"`
		ExchangeFilters []any       `json:"exchangeFilters"`
		Symbols         []any       `json:"symbols"`
	}{Timezone: "UTC", ServerTime: s.clock.Load(), RateLimits: limits, ExchangeFilters: []any{}, Symbols: syms}
	if !s.spot {
		doc.FuturesType = "U_MARGINED"
	}
	if doc.Symbols == nil {
		doc.Symbols = []any{}
	}
	b, _ := json.Marshal(doc)
	return b
}
