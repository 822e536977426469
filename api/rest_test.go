package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

const minute = int64(60_000)

// t0 is a minute boundary (2026-01-01 00:00 UTC).
const t0 = int64(1767225600000)

// fill stores n closed 1m klines of BTCUSDT from t0 and returns them.
func fill(t *testing.T, hist *MemHistory, sym, iv int, n int) []shard.Kline {
	ivs := testIntervals(t)
	var ks []shard.Kline
	open := ivs[iv].OpenTime(t0)
	for i := 0; i < n; i++ {
		k := mkKline(t, sym, iv, open, int64(i), true)
		ks = append(ks, k)
		open = ivs[iv].NextOpen(open)
	}
	hist.Add(testSymbols[sym], ivs[iv].Name, ks...)
	return ks
}

func TestRESTKlines(t *testing.T) {
	s, hist := testServer(t, "futures", nil)
	closed := fill(t, hist, 0, 0, 600)
	open := mkKline(t, 0, 0, closed[len(closed)-1].OpenTime+minute, 999, false)
	s.Publish(&open)
	waitProcessed(t, s)
	all := append(append([]shard.Kline{}, closed...), open)

	check := func(query string, want []shard.Kline) {
		t.Helper()
		status, body := get(t, s.httpURL("/fapi/v1/klines?"+query))
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", query, status, body)
		}
		rows := decodeRows(t, body)
		if len(rows) != len(want) {
			t.Fatalf("%s: %d rows, want %d", query, len(rows), len(want))
		}
		for i := range want {
			if rows[i] != rowOf(&want[i]) {
				t.Fatalf("%s: row %d = %+v, want %+v", query, i, rows[i], rowOf(&want[i]))
			}
		}
	}
	// Neither start nor end: the newest 500 (Binance's default), the open kline last.
	check("symbol=BTCUSDT&interval=1m", all[len(all)-500:])
	check("symbol=BTCUSDT&interval=1m&limit=3", all[len(all)-3:])
	// Only start: the oldest limit from start.
	check(fmt.Sprintf("symbol=BTCUSDT&interval=1m&startTime=%d&limit=5", t0+10*minute), all[10:15])
	// start inside a period: the first kline opening at or after it.
	check(fmt.Sprintf("symbol=BTCUSDT&interval=1m&startTime=%d&limit=2", t0+10*minute+1), all[11:13])
	// Only end: the newest limit up to end.
	check(fmt.Sprintf("symbol=BTCUSDT&interval=1m&endTime=%d&limit=4", t0+20*minute), all[17:21])
	// Both, no limit: from start, at most the default.
	check(fmt.Sprintf("symbol=BTCUSDT&interval=1m&startTime=%d&endTime=%d", t0, t0+599*minute), all[:500])
	check(fmt.Sprintf("symbol=BTCUSDT&interval=1m&startTime=%d&endTime=%d", t0+595*minute, t0+1000*minute), all[595:])
	// The futures maximum.
	check("symbol=BTCUSDT&interval=1m&limit=1500", all)
	// Empty range: [].
	status, body := get(t, s.httpURL(fmt.Sprintf("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=%d", t0+10_000*minute)))
	if status != 200 || string(body) != "[]" {
		t.Fatalf("empty range: %d %s, want 200 []", status, body)
	}
	status, body = get(t, s.httpURL("/fapi/v1/klines?symbol=ETHUSDT&interval=1m"))
	if status != 200 || string(body) != "[]" {
		t.Fatalf("no data: %d %s, want 200 []", status, body)
	}
}

// The store may lag: REST answers include the closed klines the server saw
// published and the still-open one, and prefer them to the store's.
func TestRESTMergesRecent(t *testing.T) {
	s, hist := testServer(t, "futures", nil)
	closed := fill(t, hist, 1, 3, 10) // ETHUSDT 90m
	ivs := testIntervals(t)
	last := closed[len(closed)-1]
	// A correction of the last stored kline, one closed kline the store lacks, and the open one.
	corr := mkKline(t, 1, 3, last.OpenTime, 77, true)
	corr.Flags = shard.FlagCorrected
	next := mkKline(t, 1, 3, ivs[3].NextOpen(last.OpenTime), 78, true)
	next.Flags = shard.FlagGap
	open := mkKline(t, 1, 3, ivs[3].NextOpen(next.OpenTime), 79, false)
	for _, k := range []*shard.Kline{&corr, &next, &open} {
		s.Publish(k)
	}
	waitProcessed(t, s)
	status, body := get(t, s.httpURL("/fapi/v1/klines?symbol=ETHUSDT&interval=90m&limit=4"))
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	rows := decodeRows(t, body)
	want := []shard.Kline{closed[len(closed)-2], corr, next, open}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i := range want {
		if rows[i] != rowOf(&want[i]) {
			t.Fatalf("row %d = %+v, want %+v", i, rows[i], rowOf(&want[i]))
		}
	}
	if rows[2].Ignore != "gap" {
		t.Fatalf("a kline with lost trades must say so in the ignore field, got %q", rows[2].Ignore)
	}
	if rows[3].OpenTime-rows[2].OpenTime != 90*minute {
		t.Fatalf("90m klines are %d ms apart", rows[3].OpenTime-rows[2].OpenTime)
	}
}

func TestRESTErrors(t *testing.T) {
	s, _ := testServer(t, "futures", nil)
	sp, _ := testServer(t, "spot", nil)
	cases := []struct {
		srv    *Server
		path   string
		status int
		code   int
		msg    string
	}{
		{s, "/fapi/v1/klines?symbol=NOPEUSDT&interval=1m", 400, -1121, "Invalid symbol."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=7m", 400, -1120, "Invalid interval."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1s", 400, -1120, "Invalid interval."},
		{s, "/fapi/v1/klines?interval=1m", 400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT", 400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."},
		{s, "/fapi/v1/klines?symbol=&interval=1m", 400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&symbol=ETHUSDT&interval=1m", 400, -1101, "Duplicate values for a parameter detected."},
		{s, "/fapi/v1/klines?symbol=btcusdt&interval=1m", 400, -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=abc", 400, -1100, "Illegal characters found in parameter 'startTime'; legal range is '^[0-9]{1,20}$'."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=-1", 400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=0", 400, -1130, "Data sent for parameter 'limit' is not valid."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1501", 400, -1130, "Data sent for parameter 'limit' is not valid."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&endTime=99999999999999999999", 400, -1130, "Data sent for parameter 'endTime' is not valid."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=10&endTime=5", 400, -1023, "Start time is greater than end time."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&foo=1", 400, -1104, "Not all sent parameters were read; read '2' parameter(s) but was sent '3'."},
		{s, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&timeZone=0", 400, -1104, "Not all sent parameters were read; read '2' parameter(s) but was sent '3'."},
		{s, "/api/v3/klines?symbol=BTCUSDT&interval=1m", 400, -1121, "Invalid symbol."}, // the futures server lists no spot symbol
		{s, "/fapi/v1/trades?symbol=BTCUSDT", 404, -1000, "Unknown endpoint: klagg serves ping, time, exchangeInfo and klines."},
		{s, "/nope", 404, -1000, "Unknown endpoint."},
		{sp, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=0", 400, -1130, "Data sent for parameter 'limit' is not valid."},
		{sp, "/api/v3/klines?symbol=BTCUSDT&interval=1m&timeZone=8", 400, -1130, "Data sent for parameter 'timeZone' is not valid: klagg serves UTC klines only."},
		{sp, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m", 400, -1121, "Invalid symbol."},
	}
	for _, c := range cases {
		status, body := get(t, c.srv.httpURL(c.path))
		var e struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: not a Binance error: %s", c.path, body)
		}
		if status != c.status || e.Code != c.code || e.Msg != c.msg {
			t.Errorf("%s: %d %+v, want %d {%d %q}", c.path, status, e, c.status, c.code, c.msg)
		}
	}
	// Spot caps an over-large limit instead of failing, accepts a UTC timeZone.
	for _, q := range []string{"limit=5000", "timeZone=0", "timeZone=%2B00:00"} {
		if status, body := get(t, sp.httpURL("/api/v3/klines?symbol=BTCUSDT&interval=1m&"+q)); status != 200 || string(body) != "[]" {
			t.Errorf("spot %s: %d %s", q, status, body)
		}
	}
	resp, err := http.Post(s.httpURL("/fapi/v1/klines?symbol=BTCUSDT&interval=1m"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", resp.StatusCode)
	}
}

func TestRESTSpotLimits(t *testing.T) {
	s, hist := testServer(t, "spot", nil)
	fill(t, hist, 2, 0, 1200)
	for q, n := range map[string]int{"": 500, "&limit=1000": 1000, "&limit=1001": 1000, "&limit=7": 7} {
		status, body := get(t, s.httpURL("/api/v3/klines?symbol=SOLUSDT&interval=1m"+q))
		if status != 200 {
			t.Fatalf("%q: %d %s", q, status, body)
		}
		if rows := decodeRows(t, body); len(rows) != n {
			t.Errorf("spot limit %q: %d rows, want %d", q, len(rows), n)
		}
	}
}

func TestPingTimeExchangeInfo(t *testing.T) {
	now := int64(1767225600123)
	s, _ := testServer(t, "futures", func(c *Config) {
		c.Clock = func() int64 { return now }
		c.Assets = func(sym string) (string, string, bool) {
			if sym == "SOLUSDT" {
				return "SOL", "USDT", true
			}
			return "", "", false
		}
	})
	for _, p := range []string{"/fapi/v1/", "/api/v3/", "/dapi/v1/"} {
		if status, body := get(t, s.httpURL(p+"ping")); status != 200 || string(body) != "{}" {
			t.Errorf("%sping: %d %s", p, status, body)
		}
		if status, body := get(t, s.httpURL(p+"time")); status != 200 || string(body) != fmt.Sprintf(`{"serverTime":%d}`, now) {
			t.Errorf("%stime: %d %s", p, status, body)
		}
	}
	var info struct {
		Timezone    string `json:"timezone"`
		ServerTime  int64  `json:"serverTime"`
		FuturesType string `json:"futuresType"`
		Symbols     []struct {
			Symbol, Status, BaseAsset, QuoteAsset, MarginAsset, ContractType string
			Filters                                                          []map[string]any
		} `json:"symbols"`
	}
	_, body := get(t, s.httpURL("/fapi/v1/exchangeInfo"))
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	if info.Timezone != "UTC" || info.ServerTime != now || info.FuturesType != "U_MARGINED" || len(info.Symbols) != len(testSymbols) {
		t.Fatalf("futures exchangeInfo: %+v", info)
	}
	for i, sym := range info.Symbols {
		if sym.Symbol != testSymbols[i] || sym.Status != "TRADING" || sym.ContractType != "PERPETUAL" || sym.QuoteAsset != "USDT" ||
			sym.MarginAsset != "USDT" || sym.BaseAsset+sym.QuoteAsset != sym.Symbol || len(sym.Filters) == 0 {
			t.Errorf("symbol %d: %+v", i, sym)
		}
	}
	_, body = get(t, s.httpURL("/api/v3/exchangeInfo"))
	info.Symbols = nil
	if err := json.Unmarshal(body, &info); err != nil || len(info.Symbols) != 0 {
		t.Fatalf("a futures server's spot exchangeInfo lists nothing: %v %s", err, body)
	}
	// New listings appear at once.
	s.cfg.Symbols.Add("DOGEUSDT")
	_, body = get(t, s.httpURL("/fapi/v1/exchangeInfo"))
	if !strings.Contains(string(body), `"symbol":"DOGEUSDT"`) {
		t.Fatal("a symbol added to the table is not listed")
	}
}

func TestOperations(t *testing.T) {
	var storeErr error
	s, _ := testServer(t, "futures", func(c *Config) {
		c.Ready = []ReadyCheck{{Name: "connected", Check: func() error { return nil }}, {Name: "store writable", Check: func() error { return storeErr }}}
	})
	s.Metrics().GetOrCreateCounter(`klagg_trades_total{stage="received"}`).Add(42)
	if status, body := get(t, s.httpURL("/healthz")); status != 200 || string(body) != "ok\n" {
		t.Errorf("healthz: %d %q", status, body)
	}
	if status, body := get(t, s.httpURL("/readyz")); status != 200 || !strings.Contains(string(body), "store writable: ok") {
		t.Errorf("readyz: %d %q", status, body)
	}
	storeErr = fmt.Errorf("disk full")
	if status, body := get(t, s.httpURL("/readyz")); status != 503 || !strings.Contains(string(body), "store writable: not ready: disk full") {
		t.Errorf("readyz not ready: %d %q", status, body)
	}
	get(t, s.httpURL("/fapi/v1/klines?symbol=BTCUSDT&interval=1m"))
	status, body := get(t, s.httpURL("/metrics"))
	for _, want := range []string{`klagg_trades_total{stage="received"} 42`, `klagg_api_rest_klines_total 1`,
		`klagg_api_ws_connections 0`, `klagg_api_close_delay_seconds_bucket`, `process_resident_memory_bytes`, `go_goroutines`} {
		if status != 200 || !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if status, body := get(t, s.httpURL("/debug/pprof/goroutine?debug=1")); status != 200 || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("pprof on loopback: %d", status)
	}
}

func TestSecurityConfig(t *testing.T) {
	base := DefaultConfig()
	base.Symbols = parse.NewSymbolTable("BTCUSDT")
	base.Intervals = testIntervals(t)
	for _, c := range []struct {
		listen, token string
		open, ok      bool
	}{
		{"127.0.0.1:0", "", false, true},
		{"[::1]:0", "", false, true},
		{"localhost:0", "", false, true},
		{"0.0.0.0:8080", "", false, false},
		{":8080", "", false, false},
		{"10.1.2.3:8080", "", false, false},
		{"0.0.0.0:8080", "secret", false, true},
		{"0.0.0.0:8080", "", true, true},
	} {
		cfg := base
		cfg.Listen, cfg.Token, cfg.Open = c.listen, c.token, c.open
		s, err := New(cfg)
		if (err == nil) != c.ok {
			t.Errorf("listen %s token %q open %v: err %v", c.listen, c.token, c.open, err)
		}
		if s != nil {
			_ = s.Close()
		}
	}
}

func TestToken(t *testing.T) {
	s, hist := testServer(t, "futures", func(c *Config) { c.Token = "s3cret" })
	fill(t, hist, 0, 0, 3)
	if status, _ := get(t, s.httpURL("/fapi/v1/klines?symbol=BTCUSDT&interval=1m")); status != 401 {
		t.Errorf("no token: %d", status)
	}
	if status, _ := get(t, s.httpURL("/t/wrong/fapi/v1/klines?symbol=BTCUSDT&interval=1m")); status != 401 {
		t.Errorf("wrong token: %d", status)
	}
	if status, body := get(t, s.httpURL("/t/s3cret/fapi/v1/klines?symbol=BTCUSDT&interval=1m")); status != 200 || len(decodeRows(t, body)) != 3 {
		t.Errorf("token prefix: %d %s", status, body)
	}
	req, _ := http.NewRequest("GET", s.httpURL("/fapi/v1/ping"), nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("bearer: %d", resp.StatusCode)
	}
	if status, _ := get(t, s.httpURL("/healthz")); status != 200 {
		t.Errorf("healthz needs no token: %d", status)
	}
	c := dialWS(t, s.wsURL("/t/s3cret/ws/btcusdt@kline_1m"))
	c.sendJSON(`{"method":"LIST_SUBSCRIPTIONS","id":1}`)
	if got := string(c.text(5 * time.Second)); got != `{"result":["btcusdt@kline_1m"],"id":1}` {
		t.Errorf("websocket under the token prefix: %s", got)
	}
}

func TestAdminListener(t *testing.T) {
	s, _ := testServer(t, "futures", func(c *Config) { c.AdminListen = "127.0.0.1:0" })
	status, body := get(t, "http://"+s.AdminAddr()+"/debug/pprof/cmdline")
	if status != 200 || len(body) == 0 {
		t.Errorf("admin pprof: %d", status)
	}
	if status, _ := get(t, "http://"+s.AdminAddr()+"/fapi/v1/ping"); status != 404 {
		t.Errorf("the admin listener serves operations only: %d", status)
	}
}

func TestChartAssets(t *testing.T) {
	s, _ := testServer(t, "spot", nil)
	for path, want := range map[string]string{
		"/":       "<title>klagg live chart</title>",
		"/app.js": "window.klagg",
		"/vendor/lightweight-charts.standalone.production.js": "TradingView Lightweight Charts",
		"/vendor/NOTICE":   "TradingView, Inc.",
		"/vendor/LICENSE":  "Apache License",
		"/klagg/v1/info":   `"intervals":["1m","2m","5m","90m","1h"]`,
		"/klagg/v1/status": `"ws_connections":0`,
	} {
		status, body := get(t, s.httpURL(path))
		if status != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d, want %q in the body", path, status, want)
		}
	}
}

type collect struct {
	got    []shard.Kline
	closed bool
}

func (c *collect) Kline(k *shard.Kline) error { c.got = append(c.got, *k); return nil }
func (c *collect) Close() error               { c.closed = true; return nil }

// Sink publishes to the server and passes every event on; HistoryFunc adapts
// a store's read.
func TestSinkAndHistoryFunc(t *testing.T) {
	next := &collect{}
	var asked string
	s, _ := testServer(t, "futures", func(c *Config) {
		c.History = HistoryFunc(func(_ context.Context, sym, iv string, start, end int64, limit int) ([]shard.Kline, error) {
			asked = fmt.Sprintf("%s %s %d %d %d", sym, iv, start, end, limit)
			return nil, nil
		})
	})
	sink := Sink{Server: s, Next: next}
	k := mkKline(t, 0, 0, t0, 1, false)
	if err := sink.Kline(&k); err != nil {
		t.Fatal(err)
	}
	waitProcessed(t, s)
	_, body := get(t, s.httpURL("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&endTime=1767225600000&limit=7"))
	if rows := decodeRows(t, body); len(rows) != 1 || rows[0] != rowOf(&k) {
		t.Fatalf("published kline not served: %s", body)
	}
	if asked != "BTCUSDT 1m -1 1767225600000 7" {
		t.Fatalf("History asked %q", asked)
	}
	if err := sink.Close(); err != nil || len(next.got) != 1 || !next.closed {
		t.Fatalf("next sink got %d klines, closed %v", len(next.got), next.closed)
	}
}
