package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
)

// testClient returns a client of market m talking to handler, with a fake
// clock starting at 12:00:10 and deterministic backoff (always Min).
func testClient(t *testing.T, m Market, handler http.HandlerFunc) (*Client, *fakeClock) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	c := NewClient(ClientConfig{Market: m, BaseURL: srv.URL + "/", HTTP: srv.Client(), MinBackoff: time.Second})
	clk := newFakeClock(time.Date(2026, 5, 1, 12, 0, 10, 0, time.UTC))
	c.now, c.sleep = clk.now, clk.sleepCtx
	c.rand = func(int64) int64 { return 0 }
	return c, clk
}

func TestClientWeightTracking(t *testing.T) {
	// The server counts weight per minute of the fake clock, like Binance.
	var (
		mu      sync.Mutex
		minute  int64
		used    int
		atTimes []time.Time
		clk     *fakeClock
	)
	c, clk := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now := clk.now()
		if m := now.Unix() / 60; m != minute {
			minute, used = m, 0
		}
		used += 20 // futures aggTrades
		atTimes = append(atTimes, now)
		w.Header().Set("X-MBX-USED-WEIGHT-1M", strconv.Itoa(used))
		mu.Unlock()
		w.Write([]byte("[]"))
	})
	c.cfg.WeightPerMinute = 100 // budget 90: four aggTrades (80) per minute
	for i := range 6 {
		if _, err := c.AggTrades(context.Background(), "BTCUSDT", 0, int64(i), 10, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The 5th request waits for 12:01:00 plus the skew margin.
	want := []time.Duration{50*time.Second + weightMargin}
	if s := clk.recorded(); !slices.Equal(s, want) {
		t.Errorf("sleeps %v, want %v", s, want)
	}
	mu.Lock()
	if atTimes[4].Unix()/60 == atTimes[3].Unix()/60 {
		t.Errorf("5th request sent in the same minute as the 4th: %v", atTimes)
	}
	mu.Unlock()
	s := c.Stats()
	if s.Requests != 6 || s.WaitedForWeight != 1 || s.UsedWeight != 40 || s.Retries != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestClientWeightFromOtherProcesses(t *testing.T) {
	// The header reports weight used by the whole IP: 85 of 100 leaves no room
	// for a 20-weight request in this minute.
	c, clk := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-mbx-used-weight-1m", "85")
		if strings.HasSuffix(r.URL.Path, "/time") {
			w.Write([]byte(`{"serverTime":1}`))
		} else {
			w.Write([]byte(`[]`))
		}
	})
	c.cfg.WeightPerMinute = 100
	if _, _, err := c.ServerTime(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AggTrades(context.Background(), "BTCUSDT", 0, 1, 10, nil); err != nil {
		t.Fatal(err)
	}
	if s := clk.recorded(); len(s) != 1 || s[0] != 50*time.Second+weightMargin {
		t.Errorf("sleeps %v, want one wait to the next minute", s)
	}
}

func TestClient429RetryAfter(t *testing.T) {
	var n atomic.Int32
	c, clk := testClient(t, Spot, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"code":-1003,"msg":"Too many requests."}`))
			return
		}
		w.Write([]byte(`{"serverTime":1499827319559}`))
	})
	ms, _, err := c.ServerTime(context.Background())
	if err != nil || ms != 1499827319559 {
		t.Fatalf("ServerTime = %d, %v", ms, err)
	}
	if s := clk.recorded(); !slices.Equal(s, []time.Duration{3 * time.Second, 3 * time.Second}) {
		t.Errorf("sleeps %v, want [3s 3s]", s)
	}
	s := c.Stats()
	if n.Load() != 3 || s.Requests != 3 || s.Status429 != 2 || s.Retries != 2 {
		t.Errorf("server saw %d requests; stats %+v", n.Load(), s)
	}
}

func TestClient429WithoutRetryAfterBacksOff(t *testing.T) {
	var n atomic.Int32
	c, clk := testClient(t, Spot, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte(`{"serverTime":5}`))
	})
	if _, _, err := c.ServerTime(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := clk.recorded(); !slices.Equal(s, []time.Duration{time.Second}) {
		t.Errorf("sleeps %v, want one MinBackoff", s)
	}
}

func TestClient418BanShared(t *testing.T) {
	var n atomic.Int32
	var clk *fakeClock
	var banEnd atomic.Int64 // Unix nanoseconds
	var early atomic.Int32
	c, clk := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			banEnd.Store(clk.now().Add(120 * time.Second).UnixNano())
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTeapot)
			w.Write([]byte(`{"code":-1003,"msg":"Way too many requests; IP banned."}`))
			return
		}
		if clk.now().UnixNano() < banEnd.Load() {
			early.Add(1)
		}
		if strings.HasSuffix(r.URL.Path, "/exchangeInfo") {
			w.Write([]byte(`{"symbols":[]}`))
		} else {
			w.Write([]byte(`{"serverTime":7}`))
		}
	})
	c.cfg.MaxRetries = -1 // the first call gives up at once...
	_, _, err := c.ServerTime(context.Background())
	var ae *APIError
	if !errors.Is(err, ErrRetriesExhausted) || !errors.As(err, &ae) || ae.Status != 418 || ae.Code != -1003 {
		t.Fatalf("first call: %v", err)
	}
	// ...but the ban holds every later request of the client.
	if _, _, err := c.ServerTime(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExchangeInfo(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := clk.recorded(); !slices.Equal(s, []time.Duration{120 * time.Second}) {
		t.Errorf("sleeps %v, want one 120s ban wait", s)
	}
	if early.Load() != 0 {
		t.Errorf("%d requests sent during the ban", early.Load())
	}
	if s := c.Stats(); s.Status418 != 1 || s.WaitedForWeight != 1 {
		t.Errorf("stats %+v", s)
	}
	// A cancelled context ends a ban wait.
	c.pause(clk.now().Add(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.ServerTime(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during ban: %v", err)
	}
}

func TestClient5xxRetried(t *testing.T) {
	var n atomic.Int32
	c, clk := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusBadGateway)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.Write([]byte(`{"serverTime":9}`))
		}
	})
	c.cfg.MinBackoff, c.cfg.MaxBackoff = time.Second, 10*time.Second
	if ms, _, err := c.ServerTime(context.Background()); err != nil || ms != 9 {
		t.Fatalf("%d, %v", ms, err)
	}
	// Backoff with the jitter pinned at its bottom: Min each time.
	if s := clk.recorded(); !slices.Equal(s, []time.Duration{time.Second, time.Second}) {
		t.Errorf("sleeps %v", s)
	}
	if s := c.Stats(); s.Requests != 3 || s.TransientErrors != 2 || s.Retries != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestClientRetriesExhausted(t *testing.T) {
	var n atomic.Int32
	c, _ := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	c.cfg.MaxRetries = 2
	_, _, err := c.ServerTime(context.Background())
	if !errors.Is(err, ErrRetriesExhausted) || !strings.Contains(err.Error(), "500") {
		t.Errorf("got %v", err)
	}
	if n.Load() != 3 {
		t.Errorf("server saw %d requests, want 3", n.Load())
	}
}

func TestClientNetworkErrorRetried(t *testing.T) {
	c, clk := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {})
	c.cfg.BaseURL = "http://127.0.0.1:1" // nothing listens on port 1
	c.cfg.MaxRetries = 1
	_, _, err := c.ServerTime(context.Background())
	if !errors.Is(err, ErrRetriesExhausted) {
		t.Errorf("got %v", err)
	}
	if s := c.Stats(); s.TransientErrors != 2 || len(clk.recorded()) != 1 {
		t.Errorf("stats %+v, sleeps %v", s, clk.recorded())
	}
}

func TestClient400Surfaces(t *testing.T) {
	var n atomic.Int32
	c, _ := testClient(t, Spot, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"code":-1121,"msg":"Invalid symbol."}`))
	})
	_, err := c.AggTrades(context.Background(), "FOOBAR", 0, 5, 10, nil)
	var ae *APIError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &ae) || ae.Code != -1121 || ae.Msg != "Invalid symbol." || ae.Status != 400 {
		t.Fatalf("got %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "cannot get aggTrades for FOOBAR from 5") || !strings.Contains(msg, "Invalid symbol.") {
		t.Errorf("error text %q", msg)
	}
	if n.Load() != 1 || c.Stats().Rejected != 1 {
		t.Errorf("%d requests (a rejection must not be retried)", n.Load())
	}
	if _, err := c.AggTrades(context.Background(), "BTCUSDT", 0, 5, 1001, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("limit 1001: %v", err)
	}
	if n.Load() != 1 {
		t.Error("an invalid request was sent")
	}
}

func TestClientAggTrades(t *testing.T) {
	body := readShared(t, "spot-rest-aggTrades-sample.json")
	for _, m := range []Market{Spot, Futures} {
		var gotURL lockedString
		c, _ := testClient(t, m, func(w http.ResponseWriter, r *http.Request) {
			gotURL.set(r.URL.String())
			if ua := r.Header.Get("User-Agent"); ua != "klagg" {
				t.Errorf("User-Agent %q", ua)
			}
			w.Write(body)
		})
		dst := make([]parse.Trade, 1) // appended to
		trades, err := c.AggTrades(context.Background(), "BTCUSDT", 3, 966492862, 10, dst)
		if err != nil {
			t.Fatal(err)
		}
		wantPath := map[Market]string{Spot: "/api/v3/aggTrades", Futures: "/fapi/v1/aggTrades"}[m]
		if gotURL.get() != wantPath+"?fromId=966492862&limit=10&symbol=BTCUSDT" {
			t.Errorf("%v: URL %s", m, gotURL.get())
		}
		// Expected values from an independent decode of the same file.
		var raw []struct {
			A, F, L, T int64
			P, Q       string
			M          bool `json:"m"`
			BestMatch  bool `json:"M"` // else encoding/json's case folding feeds "M" into M
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		if len(trades) != 1+len(raw) || len(raw) != 10 {
			t.Fatalf("%d trades, want 1+%d", len(trades), len(raw))
		}
		trim := func(s string) string { return strings.TrimSuffix(strings.TrimRight(s, "0"), ".") }
		for i, r := range raw {
			tr := trades[1+i]
			if tr.AggID != r.A || tr.FirstID != r.F || tr.LastID != r.L || tr.TradeTime != r.T || tr.EventTime != r.T ||
				tr.BuyerMaker != r.M || tr.Symbol != 3 || tr.Price.String() != trim(r.P) || tr.Qty.String() != trim(r.Q) {
				t.Errorf("trade %d: %+v, want %+v", i, tr, r)
			}
		}
	}
	c, _ := testClient(t, Spot, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("fromId") || r.URL.Query().Get("limit") != "1000" {
			t.Errorf("most recent trades: query %s", r.URL.RawQuery)
		}
		w.Write([]byte(`[{"a":1,"p":"x","q":"1","f":1,"l":1,"T":1,"m":true}]`))
	})
	if _, err := c.AggTrades(context.Background(), "BTCUSDT", 0, -1, 0, nil); !errors.Is(err, ErrBadResponse) || !errors.Is(err, parse.ErrBadNumber) {
		t.Errorf("undecodable trade: %v", err)
	}
}

func TestClientKlines(t *testing.T) {
	body := readShared(t, "spot-rest-klines-sample.json")
	var gotQuery lockedString
	c, _ := testClient(t, Spot, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v3/klines" {
			t.Errorf("path %s", r.URL.Path)
		}
		gotQuery.set(r.URL.RawQuery)
		w.Write(body)
	})
	klines, err := c.Klines(context.Background(), "BTCUSDT", "1m", 1634943780000, 1634944379999, 10)
	if err != nil {
		t.Fatal(err)
	}
	if gotQuery.get() != "endTime=1634944379999&interval=1m&limit=10&startTime=1634943780000&symbol=BTCUSDT" {
		t.Errorf("query %s", gotQuery.get())
	}
	var raw [][]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if len(klines) != len(raw) || len(raw) != 10 {
		t.Fatalf("%d klines, want %d", len(klines), len(raw))
	}
	for i, r := range raw {
		k := klines[i]
		got := []any{float64(k.OpenTime), k.Open, k.High, k.Low, k.Close, k.Volume, float64(k.CloseTime),
			k.QuoteVolume, float64(k.Trades), k.TakerBuyVolume, k.TakerBuyQuoteVolume}
		if !slices.Equal(got, r[:11]) {
			t.Errorf("kline %d: %v, want %v", i, got, r[:11])
		}
	}
	if klines[0].Open != "60685.22000000" || klines[0].Trades != 617 {
		t.Errorf("kline 0: %+v", klines[0])
	}
	for _, bad := range []string{`[[1,"2"]]`, `[[1,2,"3","4","5","6",7,"8",9,"10","11","0"]]`, `{}`} {
		c, _ := testClient(t, Spot, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(bad)) })
		if _, err := c.Klines(context.Background(), "BTCUSDT", "1m", 0, 0, 0); !errors.Is(err, ErrBadResponse) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestKlinesWeight(t *testing.T) {
	f, s := NewClient(ClientConfig{Market: Futures}), NewClient(ClientConfig{Market: Spot})
	for limit, want := range map[int]int{0: 5, 1: 1, 99: 1, 100: 2, 499: 2, 500: 5, 1000: 5, 1001: 10, 1500: 10} {
		if got := f.weightKlines(limit); got != want {
			t.Errorf("futures klines limit %d: weight %d, want %d", limit, got, want)
		}
		if got := s.weightKlines(limit); got != 2 {
			t.Errorf("spot klines weight %d", got)
		}
	}
	if f.weightAggTrades() != 20 || s.weightAggTrades() != 4 || f.weightExchangeInfo() != 1 || s.weightExchangeInfo() != 20 {
		t.Error("aggTrades/exchangeInfo weights")
	}
	if _, err := s.Klines(context.Background(), "BTCUSDT", "1m", 0, 0, 1001); !errors.Is(err, ErrBadRequest) {
		t.Errorf("spot limit 1001: %v", err)
	}
}

func TestClientServerTime(t *testing.T) {
	c, _ := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fapi/v1/time" {
			t.Errorf("path %s", r.URL.Path)
		}
		w.Write([]byte(`{"serverTime":1499827319559}`))
	})
	ms, rtt, err := c.ServerTime(context.Background())
	if err != nil || ms != 1499827319559 || rtt <= 0 {
		t.Errorf("ServerTime = %d, %v, %v", ms, rtt, err)
	}
	c, _ = testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"x":1}`)) })
	if _, _, err := c.ServerTime(context.Background()); !errors.Is(err, ErrBadResponse) {
		t.Errorf("no serverTime: %v", err)
	}
}

func TestClientExchangeInfoAndTradable(t *testing.T) {
	tests := []struct {
		m          Market
		file, path string
		symbols    int
		tradable   int // counted by hand from the file (see below)
		quotes     []string
		quoted     int
	}{
		// Futures 2021-07-22: 122 symbols = 119 PERPETUAL TRADING + 2
		// CURRENT_QUARTER TRADING (BTCUSDT_210924, ETHUSDT_210924) + 1
		// PENDING_TRADING; of the 119, 2 are quoted in BUSD.
		{Futures, "futures-exchangeInfo-2021-07-22.json", "/fapi/v1/exchangeInfo", 122, 119, []string{"BUSD"}, 2},
		// Spot 2021-10-12: 1,695 symbols, 1,262 TRADING, 606 of them in USDT or BTC.
		{Spot, "spot-exchangeInfo-2021-10-12.json", "/api/v3/exchangeInfo", 1695, 1262, []string{"USDT", "BTC"}, 606},
	}
	for _, tt := range tests {
		body := readShared(t, tt.file)
		c, _ := testClient(t, tt.m, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != tt.path {
				t.Errorf("path %s", r.URL.Path)
			}
			w.Write(body)
		})
		infos, err := c.ExchangeInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != tt.symbols {
			t.Errorf("%v: %d symbols, want %d", tt.m, len(infos), tt.symbols)
		}
		all := Tradable(tt.m, infos, nil)
		if len(all) != tt.tradable {
			t.Errorf("%v: %d tradable, want %d", tt.m, len(all), tt.tradable)
		}
		if q := Tradable(tt.m, infos, tt.quotes); len(q) != tt.quoted {
			t.Errorf("%v: %d tradable in %v, want %d", tt.m, len(q), tt.quotes, tt.quoted)
		}
		if tt.m == Futures && (slices.Contains(all, "BTCUSDT_210924") || !slices.Contains(all, "BTCUSDT")) {
			t.Errorf("futures tradable set wrong: %v", all[:5])
		}
	}
}

func TestTradable(t *testing.T) {
	infos := []parse.SymbolInfo{
		{Symbol: "BTCUSDT", Status: "TRADING", QuoteAsset: "USDT", ContractType: "PERPETUAL"},
		{Symbol: "BTCUSDT_260626", Status: "TRADING", QuoteAsset: "USDT", ContractType: "CURRENT_QUARTER"},
		{Symbol: "ETHBUSD", Status: "TRADING", QuoteAsset: "BUSD", ContractType: "PERPETUAL"},
		{Symbol: "OLDUSDT", Status: "SETTLING", QuoteAsset: "USDT", ContractType: "PERPETUAL"},
		{Symbol: "XRPBTC", Status: "TRADING", QuoteAsset: "BTC"},
		{Symbol: "DEADBTC", Status: "BREAK", QuoteAsset: "BTC"},
	}
	tests := []struct {
		m      Market
		quotes []string
		want   []string
	}{
		{Futures, nil, []string{"BTCUSDT", "ETHBUSD"}},
		{Futures, []string{"USDT"}, []string{"BTCUSDT"}},
		{Spot, nil, []string{"BTCUSDT", "BTCUSDT_260626", "ETHBUSD", "XRPBTC"}},
		{Spot, []string{"BTC", "BUSD"}, []string{"ETHBUSD", "XRPBTC"}},
	}
	for _, tt := range tests {
		if got := Tradable(tt.m, infos, tt.quotes); !slices.Equal(got, tt.want) {
			t.Errorf("Tradable(%v, %v) = %v, want %v", tt.m, tt.quotes, got, tt.want)
		}
	}
}

// lockedString passes a value from a server handler to the test goroutine.
type lockedString struct {
	mu sync.Mutex
	s  string
}

func (l *lockedString) set(s string) { l.mu.Lock(); l.s = s; l.mu.Unlock() }

func (l *lockedString) get() string { l.mu.Lock(); defer l.mu.Unlock(); return l.s }
