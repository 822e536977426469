package fakex

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type restTrade struct {
	A int64  `json:"a"`
	P string `json:"p"`
	Q string `json:"q"`
	F int64  `json:"f"`
	L int64  `json:"l"`
	T int64  `json:"T"`
	M bool   `json:"m"`
	B *bool  `json:"M"`
}

func aggTradesREST(t *testing.T, s *Server, prefix, query string) []restTrade {
	t.Helper()
	status, h, body := get(t, s.RESTURL()+prefix+"aggTrades?"+query)
	if status != http.StatusOK {
		t.Fatalf("aggTrades?%s: %d %s", query, status, body)
	}
	if h.Get("X-MBX-USED-WEIGHT-1M") == "" {
		t.Error("no X-MBX-USED-WEIGHT-1M header")
	}
	var out []restTrade
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("aggTrades body %s: %v", body, err)
	}
	return out
}

func TestRESTAggTradesServesWithheldIDs(t *testing.T) {
	cfg := synthetic("futures")
	cfg.Faults = Faults{WithholdN: 3, WithholdAfter: 5}
	s := startServer(t, cfg)
	c := dial(t, s.WSURL()+"/market/stream?streams=s0000usdt@aggTrade")
	var ws []event
	for range 20 {
		ws = append(ws, decodeEvent(t, c.text()))
	}
	pr := s.Produced()["S0000USDT"]
	if len(pr.Withheld) != 3 {
		t.Fatalf("withheld %v, want 3 ids", pr.Withheld)
	}
	// The WebSocket skips exactly the withheld ids, after the 5th trade.
	for i := 1; i < len(ws); i++ {
		gap := ws[i].AggID - ws[i-1].AggID
		want := int64(1)
		if i == 5 {
			want = 4
		}
		if gap != want {
			t.Fatalf("ws ids %d -> %d at %d, want gap %d", ws[i-1].AggID, ws[i].AggID, i, want)
		}
	}
	got := aggTradesREST(t, s, "/fapi/v1/", fmt.Sprintf("symbol=S0000USDT&fromId=%d&limit=10", ws[0].AggID))
	if len(got) != 10 {
		t.Fatalf("got %d trades, want 10", len(got))
	}
	for i, tr := range got {
		if tr.A != ws[0].AggID+int64(i) || tr.B != nil {
			t.Fatalf("trade %d = %+v", i, tr)
		}
	}
	for i := range 5 { // what REST serves is what the WebSocket sent
		if w := ws[i]; got[i].P != w.Price || got[i].Q != w.Qty || got[i].F != w.First || got[i].L != w.Last || got[i].T != w.Time || got[i].M != w.Maker {
			t.Fatalf("REST %+v != WS %+v", got[i], w)
		}
	}
	if tr := s.Trades("S0000USDT", ws[0].AggID, 2); len(tr) != 2 || tr[1].Price != got[1].P {
		t.Fatalf("Trades() = %+v", tr)
	}
	// Default limit 500 and limit bounds.
	if n := len(aggTradesREST(t, s, "/fapi/v1/", "symbol=S0000USDT&fromId="+strconv.FormatInt(pr.First, 10))); n == 0 || n > 500 {
		t.Fatalf("default limit gave %d", n)
	}
	if status, _, _ := get(t, s.RESTURL()+"/fapi/v1/aggTrades?symbol=S0000USDT&limit=1001"); status != 400 {
		t.Errorf("limit=1001: status %d", status)
	}
}

func TestRESTHistoryBound(t *testing.T) {
	cfg := synthetic("futures")
	cfg.Symbols = 1
	cfg.History = 50
	cfg.Rate = 20000
	s := startServer(t, cfg)
	c := dial(t, s.WSURL()+"/market/stream?streams=s0000usdt@aggTrade")
	first := decodeEvent(t, c.text()).AggID
	for range 200 {
		c.text()
	}
	if got := aggTradesREST(t, s, "/fapi/v1/", fmt.Sprintf("symbol=S0000USDT&fromId=%d", first)); len(got) != 0 {
		t.Fatalf("ids older than the history were served: %d trades", len(got))
	}
	if got := aggTradesREST(t, s, "/fapi/v1/", "symbol=S0000USDT&limit=1000"); len(got) != 50 {
		t.Fatalf("latest trades: %d, want the 50 kept", len(got))
	}
}

func TestRESTTimeExchangeInfoErrors(t *testing.T) {
	for _, market := range []string{"futures", "spot"} {
		t.Run("market="+market, func(t *testing.T) {
			s := startServer(t, synthetic(market))
			prefix := "/fapi/v1/"
			if market == "spot" {
				prefix = "/api/v3/"
			}
			c := dial(t, s.WSURL()+strings.TrimPrefix("/market/stream?streams=s0000usdt@aggTrade", map[string]string{"futures": "", "spot": "/market"}[market]))
			e := decodeEvent(t, c.text())
			serverTime := func() int64 {
				_, _, body := get(t, s.RESTURL()+prefix+"time")
				var v struct{ ServerTime int64 }
				if err := json.Unmarshal(body, &v); err != nil {
					t.Fatalf("time %s: %v", body, err)
				}
				return v.ServerTime
			}
			t1 := serverTime()
			if t1 < e.Time {
				t.Fatalf("serverTime %d before a trade sent at %d", t1, e.Time)
			}
			for range 50 {
				c.text()
			}
			if t2 := serverTime(); t2 <= t1 {
				t.Fatalf("serverTime did not follow the data: %d then %d", t1, t2)
			}

			status, h, body := get(t, s.RESTURL()+prefix+"exchangeInfo")
			if status != 200 || h.Get("X-MBX-USED-WEIGHT-1M") == "" {
				t.Fatalf("exchangeInfo %d %v", status, h)
			}
			var info struct {
				Timezone   string
				ServerTime int64
				RateLimits []map[string]any
				Symbols    []map[string]any
			}
			if err := json.Unmarshal(body, &info); err != nil {
				t.Fatal(err)
			}
			if info.Timezone != "UTC" || info.ServerTime == 0 || len(info.RateLimits) == 0 || len(info.Symbols) != 4 {
				t.Fatalf("exchangeInfo = %s", body)
			}
			sym := info.Symbols[0]
			if sym["symbol"] != "S0000USDT" || sym["status"] != "TRADING" || sym["baseAsset"] != "S0000" || sym["quoteAsset"] != "USDT" {
				t.Fatalf("symbol = %v", sym)
			}
			if _, has := sym["contractType"]; has != (market == "futures") {
				t.Fatalf("contractType presence wrong: %v", sym)
			}

			status, _, body = get(t, s.RESTURL()+prefix+"aggTrades?symbol=NOPE")
			if status != 400 || !strings.Contains(string(body), `"code":-1121`) {
				t.Fatalf("unknown symbol: %d %s", status, body)
			}
			status, _, _ = get(t, s.RESTURL()+prefix+"klines?symbol=S0000USDT&interval=7m")
			if status != 400 {
				t.Fatalf("bad interval: %d", status)
			}
			status, _, body = get(t, s.RESTURL()+prefix+"klines?symbol=S0000USDT&interval=1m&limit=5")
			var klines [][]any
			if status != 200 || json.Unmarshal(body, &klines) != nil || len(klines) == 0 || len(klines[0]) != 12 {
				t.Fatalf("klines: %d %s", status, body)
			}
			st := s.Stats()
			if st.REST[RESTKey{"aggTrades", 400}] != 1 || st.REST[RESTKey{"time", 200}] != 2 {
				t.Fatalf("REST stats %v", st.REST)
			}
		})
	}
}

// TestRESTKlinesFromTrades checks the 1m kline against the trades REST serves.
func TestRESTKlinesFromTrades(t *testing.T) {
	s := tradingServer(t, 100)
	trades := aggTradesREST(t, s, "/fapi/v1/", "symbol=S0000USDT&limit=1000")
	open := trades[0].T - trades[0].T%60000
	end := trades[len(trades)-1].T - 1 // trades of the last millisecond may still be coming
	_, _, body := get(t, s.RESTURL()+fmt.Sprintf("/fapi/v1/klines?symbol=S0000USDT&interval=1m&startTime=%d&endTime=%d", open, end))
	var klines [][]any
	if err := json.Unmarshal(body, &klines); err != nil {
		t.Fatal(err)
	}
	var n, count int64
	high := 0.0
	for _, tr := range trades {
		if tr.T-tr.T%60000 == open && tr.T <= end {
			n++
			count += tr.L - tr.F + 1
			p, _ := strconv.ParseFloat(tr.P, 64)
			high = max(high, p)
		}
	}
	k := klines[0]
	if int64(k[0].(float64)) != open || int64(k[8].(float64)) != count {
		t.Fatalf("kline %v: want open %d and %d trades (%d aggTrades)", k, open, count, n)
	}
	if h, _ := strconv.ParseFloat(k[2].(string), 64); h != high {
		t.Fatalf("kline high %v, want %v", k[2], high)
	}
}

func TestRESTWeightAndRateLimitFault(t *testing.T) {
	cfg := synthetic("futures")
	cfg.Faults = Faults{RateLimit: 3}
	s := startServer(t, cfg)
	var statuses []int
	var weights []int
	for range 6 {
		status, h, body := get(t, s.RESTURL()+"/fapi/v1/aggTrades?symbol=S0000USDT&limit=1")
		statuses = append(statuses, status)
		w, _ := strconv.Atoi(h.Get("X-MBX-USED-WEIGHT-1M"))
		weights = append(weights, w)
		if status == 429 && (h.Get("Retry-After") != "1" || !strings.Contains(string(body), "-1003")) {
			t.Fatalf("429 without Retry-After: 1: %v %s", h, body)
		}
	}
	if fmt.Sprint(statuses) != "[200 200 429 200 200 429]" {
		t.Fatalf("statuses %v", statuses)
	}
	for i := 1; i < len(weights); i++ {
		if d := weights[i] - weights[i-1]; d != 20 && weights[i] != 20 { // 20 per aggTrades; a new minute restarts
			t.Fatalf("weights %v", weights)
		}
	}
	if n := s.Stats().Faults["ratelimit"]; n != 2 {
		t.Fatalf("ratelimit faults %d", n)
	}
}

func TestRESTWeightLimit(t *testing.T) {
	s := startServer(t, synthetic("futures"))
	now := time.Now()
	if now.Second() > 55 {
		time.Sleep(time.Duration(61-now.Second()) * time.Second) // keep the loop inside one minute
	}
	s.weights.take(2400-20, time.Now())
	status, _, _ := get(t, s.RESTURL()+"/fapi/v1/aggTrades?symbol=S0000USDT&limit=1")
	if status != 200 {
		t.Fatalf("at the limit: %d", status)
	}
	status, h, _ := get(t, s.RESTURL()+"/fapi/v1/time")
	if status != 429 || h.Get("Retry-After") == "" || h.Get("X-MBX-USED-WEIGHT-1M") != "2401" {
		t.Fatalf("over the limit: %d %v", status, h)
	}
}

// The calendar grids of 3d, 1w and 1M, against dates worked out by hand.
func TestKlineGrids(t *testing.T) {
	ms := func(s string) int64 {
		v, err := time.Parse("2006-01-02 15:04:05.000", s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UnixMilli()
	}
	for _, c := range []struct{ iv, at, open, close string }{
		{"3d", "2017-08-17 04:00:00.000", "2017-08-17 00:00:00.000", "2017-08-19 23:59:59.999"}, // Binance's BTCUSDT
		{"3d", "2017-08-16 23:59:59.999", "2017-08-14 00:00:00.000", "2017-08-16 23:59:59.999"},
		{"1w", "2026-11-26 12:00:00.000", "2026-11-23 00:00:00.000", "2026-11-29 23:59:59.999"}, // a Thursday
		{"1w", "2026-11-30 00:00:00.000", "2026-11-30 00:00:00.000", "2026-12-06 23:59:59.999"}, // a Monday
		{"1w", "1969-12-31 00:00:00.000", "1969-12-29 00:00:00.000", "1970-01-04 23:59:59.999"},
		{"1M", "2024-02-15 08:00:00.000", "2024-02-01 00:00:00.000", "2024-02-29 23:59:59.999"}, // a leap year
		{"1M", "2026-12-31 23:59:59.999", "2026-12-01 00:00:00.000", "2026-12-31 23:59:59.999"},
		{"1d", "2026-11-30 13:00:00.000", "2026-11-30 00:00:00.000", "2026-11-30 23:59:59.999"},
	} {
		g := grid(klineIntervals[c.iv])
		if open := g.open(ms(c.at)); open != ms(c.open) || g.next(open)-1 != ms(c.close) {
			t.Errorf("%s at %s: [%d, %d], want [%s, %s]", c.iv, c.at, open, g.next(open)-1, c.open, c.close)
		}
	}
}

// klines serves 3d, 1w and 1M on their grids.
func TestRESTKlinesCalendar(t *testing.T) {
	s := tradingServer(t, 10)
	for _, iv := range []string{"3d", "1w", "1M"} {
		_, _, body := get(t, s.RESTURL()+"/fapi/v1/klines?symbol=S0000USDT&interval="+iv+"&limit=2")
		var klines [][]any
		if err := json.Unmarshal(body, &klines); err != nil {
			t.Fatalf("%s: %v: %s", iv, err, body)
		}
		if len(klines) == 0 {
			t.Fatalf("%s: no kline: %s", iv, body)
		}
		k := klines[len(klines)-1]
		g := grid(klineIntervals[iv])
		open, closeTime := int64(k[0].(float64)), int64(k[6].(float64))
		if g.open(open) != open || closeTime != g.next(open)-1 || k[8].(float64) == 0 {
			t.Errorf("%s: kline %v off its grid or empty", iv, k)
		}
	}
}

// tradingServer starts a synthetic futures feed of one symbol, S0000USDT, and
// returns once a client read its first n frames.
func tradingServer(t *testing.T, n int) *Server {
	t.Helper()
	cfg := synthetic("futures")
	cfg.Symbols = 1
	s := startServer(t, cfg)
	c := dial(t, s.WSURL()+"/market/stream?streams=s0000usdt@aggTrade")
	for range n {
		c.text()
	}
	return s
}
