package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/shard"
)

// REST prefixes: Binance's spot, USD-M futures and COIN-M futures APIs.
const (
	prefixSpot    = "/api/v3/"
	prefixFutures = "/fapi/v1/"
	prefixCoinM   = "/dapi/v1/"
)

// restEndpoint is a REST request's prefix and endpoint name.
type restEndpoint struct {
	prefix, name string
}

// restRoute recognises /api/v3/*, /fapi/v1/* and /dapi/v1/*. Every prefix
// answers ping, time and exchangeInfo (ccxt loads markets from several
// before it fetches klines); only the market's own lists symbols and serves
// klines.
func (s *Server) restRoute(path string) (restEndpoint, bool) {
	for _, p := range [...]string{prefixSpot, prefixFutures, prefixCoinM} {
		if name, ok := strings.CutPrefix(path, p); ok {
			return restEndpoint{p, name}, true
		}
	}
	return restEndpoint{}, false
}

func (s *Server) marketPrefix() string {
	if s.spot {
		return prefixSpot
	}
	return prefixFutures
}

func writeError(w http.ResponseWriter, e *apiError) {
	b := []byte(`{"code":`)
	b = strconv.AppendInt(b, int64(e.Code), 10)
	b = append(b, `,"msg":`...)
	b = strconv.AppendQuote(b, e.Msg)
	b = append(b, '}')
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Access-Control-Allow-Origin", "*")
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// serveREST answers one REST request.
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, ep restEndpoint) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.m.restClientErr.Inc()
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Code: codeUnknown, Msg: "Method not allowed: klagg serves market data (GET) only."})
		return
	}
	switch ep.name {
	case "ping":
		s.m.restOK.Inc()
		writeJSON(w, []byte("{}"))
	case "time":
		s.m.restOK.Inc()
		b := strconv.AppendInt([]byte(`{"serverTime":`), s.cfg.Clock(), 10)
		writeJSON(w, append(b, '}'))
	case "exchangeInfo":
		s.m.restOK.Inc()
		writeJSON(w, s.exchangeInfo(ep.prefix))
	case "klines":
		s.serveKlines(w, r, ep)
	default:
		s.m.restClientErr.Inc()
		writeError(w, &apiError{Status: http.StatusNotFound, Code: codeUnknown, Msg: "Unknown endpoint: klagg serves ping, time, exchangeInfo and klines."})
	}
}

func (s *Server) serveKlines(w http.ResponseWriter, r *http.Request, ep restEndpoint) {
	start := time.Now()
	s.m.restRequests.Inc()
	q, e := parseKlinesQuery(r.URL.RawQuery, ep.prefix == prefixSpot, s.cfg.DefaultLimit, s.cfg.MaxLimit, s.served)
	if e == nil && (ep.prefix != s.marketPrefix() || !s.knownSymbol(q.Symbol)) {
		e = errInvalidSymbol
	}
	if e != nil {
		s.m.restClientErr.Inc()
		writeError(w, e)
		return
	}
	rows, err := s.klines(r.Context(), q)
	if err != nil {
		s.m.restServerErr.Inc()
		if ce := s.log.Check(zap.WarnLevel, "cannot read klines from history"); ce != nil {
			ce.Write(zap.String("symbol", q.Symbol), zap.String("interval", q.Interval), zap.Error(err))
		}
		writeError(w, &apiError{Status: http.StatusInternalServerError, Code: codeUnknown, Msg: "An unknown error occurred while processing the request."})
		return
	}
	bp := bodyPool.Get().(*[]byte)
	body := append((*bp)[:0], '[')
	for i := range rows {
		if i > 0 {
			body = append(body, ',')
		}
		body = AppendRESTKline(body, &rows[i])
	}
	body = append(body, ']')
	writeJSON(w, body)
	if cap(body) <= 1<<20 {
		*bp = body[:0]
		bodyPool.Put(bp)
	}
	s.m.restOK.Inc()
	s.m.restDuration.UpdateDuration(start)
}

func (s *Server) knownSymbol(sym string) bool {
	_, ok := s.cfg.Symbols.Load().Lookup([]byte(sym))
	return ok
}

// klines answers a validated query from History and the stream's recent
// klines (the open one, and closed ones the store may not have yet).
func (s *Server) klines(ctx context.Context, q klinesQuery) ([]shard.Kline, error) {
	var hist []shard.Kline
	if s.cfg.History != nil {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.HistoryTimeout)
		defer cancel()
		var err error
		hist, err = s.cfg.History.Klines(ctx, q.Symbol, q.Interval, q.Start, q.End, q.Limit)
		if err != nil {
			return nil, err
		}
	}
	var recent []shard.Kline
	if st := s.lookup(q.Symbol, q.Interval); st != nil {
		recent = st.recentKlines(nil)
	}
	return mergeKlines(hist, recent, q), nil
}

// mergeKlines merges History's answer with the server's recent klines
// (recent wins for the same open time: it is at least as new), keeps the
// query's time range and applies its limit: the oldest Limit when Start is
// set, else the newest Limit. Both inputs are sorted by open time.
func mergeKlines(hist, recent []shard.Kline, q klinesQuery) []shard.Kline {
	recent = slices.DeleteFunc(recent, func(k shard.Kline) bool {
		return (q.Start != Unset && k.OpenTime < q.Start) || (q.End != Unset && k.OpenTime > q.End)
	})
	out := hist
	if len(recent) > 0 {
		out = make([]shard.Kline, 0, len(hist)+len(recent))
		i, j := 0, 0
		for i < len(hist) || j < len(recent) {
			switch {
			case j == len(recent) || (i < len(hist) && hist[i].OpenTime < recent[j].OpenTime):
				out = append(out, hist[i])
				i++
			case i == len(hist) || recent[j].OpenTime < hist[i].OpenTime:
				out = append(out, recent[j])
				j++
			default: // same open time
				out = append(out, recent[j])
				i++
				j++
			}
		}
	}
	if len(out) > q.Limit {
		if q.Start != Unset {
			out = out[:q.Limit]
		} else {
			out = out[len(out)-q.Limit:]
		}
	}
	return out
}

// quoteSuffixes guess a symbol's quote asset when Config.Assets is not set,
// longest first.
var quoteSuffixes = []string{"FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USDP", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "USD", "DAI"}

func (s *Server) assets(sym string) (base, quote string) {
	if s.cfg.Assets != nil {
		if b, q, ok := s.cfg.Assets(sym); ok {
			return b, q
		}
	}
	for _, q := range quoteSuffixes {
		if b, ok := strings.CutSuffix(sym, q); ok && b != "" {
			return b, q
		}
	}
	return sym, ""
}

type filter struct {
	FilterType  string `json:"filterType"`
	MinPrice    string `json:"minPrice,omitempty"`
	MaxPrice    string `json:"maxPrice,omitempty"`
	TickSize    string `json:"tickSize,omitempty"`
	MinQty      string `json:"minQty,omitempty"`
	MaxQty      string `json:"maxQty,omitempty"`
	StepSize    string `json:"stepSize,omitempty"`
	Notional    string `json:"notional,omitempty"`
	MinNotional string `json:"minNotional,omitempty"`
}

var (
	spotFilters = []filter{
		{FilterType: "PRICE_FILTER", MinPrice: "0.00000001", MaxPrice: "1000000.00000000", TickSize: "0.00000001"},
		{FilterType: "LOT_SIZE", MinQty: "0.00000001", MaxQty: "9000000.00000000", StepSize: "0.00000001"},
		{FilterType: "NOTIONAL", MinNotional: "5.00000000"},
	}
	futuresFilters = []filter{
		{FilterType: "PRICE_FILTER", MinPrice: "0.00000001", MaxPrice: "1000000", TickSize: "0.00000001"},
		{FilterType: "LOT_SIZE", MinQty: "0.00000001", MaxQty: "9000000", StepSize: "0.00000001"},
		{FilterType: "MARKET_LOT_SIZE", MinQty: "0.00000001", MaxQty: "9000000", StepSize: "0.00000001"},
		{FilterType: "MIN_NOTIONAL", Notional: "5"},
	}
)

type spotSymbol struct {
	Symbol                     string     `json:"symbol"`
	Status                     string     `json:"status"`
	BaseAsset                  string     `json:"baseAsset"`
	BaseAssetPrecision         int        `json:"baseAssetPrecision"`
	QuoteAsset                 string     `json:"quoteAsset"`
	QuotePrecision             int        `json:"quotePrecision"`
	QuoteAssetPrecision        int        `json:"quoteAssetPrecision"`
	BaseCommissionPrecision    int        `json:"baseCommissionPrecision"`
	QuoteCommissionPrecision   int        `json:"quoteCommissionPrecision"`
	OrderTypes                 []string   `json:"orderTypes"`
	IcebergAllowed             bool       `json:"icebergAllowed"`
	OcoAllowed                 bool       `json:"ocoAllowed"`
	QuoteOrderQtyMarketAllowed bool       `json:"quoteOrderQtyMarketAllowed"`
	IsSpotTradingAllowed       bool       `json:"isSpotTradingAllowed"`
	IsMarginTradingAllowed     bool       `json:"isMarginTradingAllowed"`
	Filters                    []filter   `json:"filters"`
	Permissions                []string   `json:"permissions"`
	PermissionSets             [][]string `json:"permissionSets"`
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
	UnderlyingSubType  []string `json:"underlyingSubType"`
	TriggerProtect     string   `json:"triggerProtect"`
	LiquidationFee     string   `json:"liquidationFee"`
	MarketTakeBound    string   `json:"marketTakeBound"`
	Filters            []filter `json:"filters"`
	OrderTypes         []string `json:"orderTypes"`
	TimeInForce        []string `json:"timeInForce"`
}

type rateLimit struct {
	RateLimitType string `json:"rateLimitType"`
	Interval      string `json:"interval"`
	IntervalNum   int    `json:"intervalNum"`
	Limit         int    `json:"limit"`
}

// exchangeInfo lists the symbols klagg follows in Binance's exchangeInfo
// shape for prefix: the market's own prefix lists every symbol of the
// table, the others none. Precisions are unknown to klagg: every filter
// allows 8 decimals, which covers every Binance price and quantity.
func (s *Server) exchangeInfo(prefix string) []byte {
	var syms []any
	if prefix == s.marketPrefix() {
		for _, name := range s.cfg.Symbols.Load().Names() {
			base, quote := s.assets(name)
			if prefix == prefixSpot {
				syms = append(syms, spotSymbol{Symbol: name, Status: "TRADING", BaseAsset: base, BaseAssetPrecision: 8,
					QuoteAsset: quote, QuotePrecision: 8, QuoteAssetPrecision: 8, BaseCommissionPrecision: 8,
					QuoteCommissionPrecision: 8, OrderTypes: []string{"LIMIT", "MARKET"}, IsSpotTradingAllowed: true,
					Filters: spotFilters, Permissions: []string{}, PermissionSets: [][]string{{"SPOT"}}})
				continue
			}
			syms = append(syms, futuresSymbol{Symbol: name, Pair: name, ContractType: "PERPETUAL",
				DeliveryDate: 4133404800000, OnboardDate: 1569398400000, Status: "TRADING", BaseAsset: base,
				QuoteAsset: quote, MarginAsset: quote, PricePrecision: 8, QuantityPrecision: 8, BaseAssetPrecision: 8,
				QuotePrecision: 8, UnderlyingType: "COIN", UnderlyingSubType: []string{}, TriggerProtect: "0.0500",
				LiquidationFee: "0.012500", MarketTakeBound: "0.05", Filters: futuresFilters,
				OrderTypes: []string{"LIMIT", "MARKET"}, TimeInForce: []string{"GTC", "IOC", "FOK", "GTX"}})
		}
	}
	if syms == nil {
		syms = []any{}
	}
	doc := struct {
		Timezone        string      `json:"timezone"`
		ServerTime      int64       `json:"serverTime"`
		FuturesType     string      `json:"futuresType,omitempty"`
		RateLimits      []rateLimit `json:"rateLimits"`
		ExchangeFilters []any       `json:"exchangeFilters"`
		Assets          []any       `json:"assets,omitempty"`
		Symbols         []any       `json:"symbols"`
	}{Timezone: "UTC", ServerTime: s.cfg.Clock(), ExchangeFilters: []any{}, Symbols: syms}
	switch prefix {
	case prefixSpot:
		doc.RateLimits = []rateLimit{{"REQUEST_WEIGHT", "MINUTE", 1, 6000}, {"RAW_REQUESTS", "MINUTE", 5, 61000}}
	case prefixFutures:
		doc.FuturesType = "U_MARGINED"
		doc.RateLimits = []rateLimit{{"REQUEST_WEIGHT", "MINUTE", 1, 2400}}
		doc.Assets = []any{}
	default:
		doc.RateLimits = []rateLimit{{"REQUEST_WEIGHT", "MINUTE", 1, 2400}}
	}
	b, _ := json.Marshal(doc)
	return b
}
