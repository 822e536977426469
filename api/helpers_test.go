package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// testSymbols and testIntervals are what every test server follows; 2m and
// 90m are custom intervals.
var (
	testSymbols       = []string{"BTCUSDT", "ETHUSDT", "SOLUSDT"}
	testIntervalNames = "1m,2m,5m,90m,1h"
)

func testIntervals(t testing.TB) []shard.Interval {
	t.Helper()
	ivs, err := shard.ParseIntervals(testIntervalNames)
	if err != nil {
		t.Fatal(err)
	}
	return ivs
}

// testServer starts a server on a free loopback port with an in-memory
// history; edit adjusts the config first.
func testServer(t testing.TB, market string, edit func(*Config)) (*Server, *MemHistory) {
	t.Helper()
	hist := NewMemHistory()
	cfg := DefaultConfig()
	cfg.Market = market
	cfg.Listen = "127.0.0.1:0"
	cfg.Symbols = parse.NewSymbolTable(testSymbols...)
	cfg.Intervals = testIntervals(t)
	cfg.History = hist
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, hist
}

func dec(s string) parse.Decimal {
	whole, frac, _ := strings.Cut(s, ".")
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		panic(err)
	}
	frac = (frac + "00000000")[:8]
	f, err := strconv.ParseUint(frac, 10, 64)
	if err != nil {
		panic(err)
	}
	return parse.Decimal(w*100_000_000 + f)
}

// mkKline makes a deterministic kline of symbol sym and interval iv (indices
// into testSymbols / testIntervals) opening at open; seed varies the numbers.
func mkKline(t testing.TB, sym, iv int, open int64, seed int64, closed bool) shard.Kline {
	ivs := testIntervals(t)
	base := uint64(30000_00000000) + uint64(seed%1000)*1_00000000
	vol := shard.Uint128{Lo: uint64(1+seed%7) * 123_456_789}
	quote := shard.Mul64(base, vol.Lo)
	return shard.Kline{
		Symbol: uint32(sym), Interval: uint8(iv), Closed: closed,
		OpenTime: open, CloseTime: ivs[iv].CloseTime(open),
		Open: parse.Decimal(base), High: parse.Decimal(base + 5_50000000), Low: parse.Decimal(base - 2_25000000),
		Close: parse.Decimal(base + 1_00000000 + uint64(seed%3)*1000000), Volume: vol, TakerBuyVolume: shard.Uint128{Lo: vol.Lo / 3},
		QuoteVolume: quote, TakerBuyQuoteVolume: shard.Mul64(base, vol.Lo/3),
		Count: 10 + seed, FirstTradeID: 1000 * seed, LastTradeID: 1000*seed + 9 + seed, FirstAggID: seed, LastAggID: seed + 3,
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitProcessed waits until the hub has handled everything published.
func waitProcessed(t testing.TB, s *Server) {
	t.Helper()
	waitFor(t, 5*time.Second, "the hub to process published klines", func() bool {
		st := s.Stats()
		return st.Processed >= st.Published
	})
}

// get fetches url and returns status and body.
func get(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// restRow is one decoded REST klines row, in Binance's types.
type restRow struct {
	OpenTime, CloseTime              int64
	Open, High, Low, Close, Volume   string
	QuoteVolume, TakerBuy, TakerBuyQ string
	Trades                           int64
	Ignore                           string
}

// decodeRows decodes a klines answer, checking every field's JSON type.
func decodeRows(t testing.TB, body []byte) []restRow {
	t.Helper()
	var raw [][]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("klines answer is not an array of arrays: %v: %s", err, body)
	}
	out := make([]restRow, len(raw))
	for i, r := range raw {
		if len(r) != 12 {
			t.Fatalf("row %d has %d fields, want 12", i, len(r))
		}
		num := func(j int) int64 {
			var n int64
			if err := json.Unmarshal(r[j], &n); err != nil {
				t.Fatalf("row %d field %d: want a number, got %s", i, j, r[j])
			}
			return n
		}
		str := func(j int) string {
			var s string
			if err := json.Unmarshal(r[j], &s); err != nil {
				t.Fatalf("row %d field %d: want a string, got %s", i, j, r[j])
			}
			return s
		}
		out[i] = restRow{OpenTime: num(0), Open: str(1), High: str(2), Low: str(3), Close: str(4), Volume: str(5),
			CloseTime: num(6), QuoteVolume: str(7), Trades: num(8), TakerBuy: str(9), TakerBuyQ: str(10), Ignore: str(11)}
	}
	return out
}

// rowOf is the row the server must answer for k.
func rowOf(k *shard.Kline) restRow {
	ign := "0"
	if q := k.Flags & shard.QualityFlags; q != 0 {
		ign = q.String()
	}
	return restRow{OpenTime: k.OpenTime, CloseTime: k.CloseTime, Open: k.Open.String(), High: k.High.String(),
		Low: k.Low.String(), Close: k.Close.String(), Volume: string(k.Volume.AppendDecimal(nil, parse.Scale)),
		QuoteVolume: string(k.QuoteVolume.AppendDecimal(nil, quoteScale)), Trades: k.Count,
		TakerBuy: string(k.TakerBuyVolume.AppendDecimal(nil, parse.Scale)), TakerBuyQ: string(k.TakerBuyQuoteVolume.AppendDecimal(nil, quoteScale)),
		Ignore: ign}
}

// wsClient is a minimal WebSocket client that sees every frame, pings included.
type wsClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialWS(t testing.TB, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatalf("cannot dial %s: %v", url, err)
	}
	if br == nil {
		br = bufio.NewReader(nc)
	} else {
		br = bufio.NewReaderSize(io.MultiReader(br, nc), 4096)
	}
	c := &wsClient{t: t, nc: nc, r: br}
	t.Cleanup(func() { _ = nc.Close() })
	return c
}

// frame reads the next frame of any kind.
func (c *wsClient) frame(d time.Duration) (ws.OpCode, []byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return 0, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return 0, nil, err
	}
	return h.OpCode, p, nil
}

// text returns the next text message, answering pings on the way.
func (c *wsClient) text(d time.Duration) []byte {
	c.t.Helper()
	for {
		op, p, err := c.frame(d)
		if err != nil {
			c.t.Fatalf("cannot read a text message: %v", err)
		}
		switch op {
		case ws.OpText:
			return p
		case ws.OpPing:
			c.send(ws.OpPong, p)
		case ws.OpClose:
			c.t.Fatalf("connection closed by the server: %q", p)
		}
	}
}

func (c *wsClient) send(op ws.OpCode, p []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewFrame(op, true, p))); err != nil {
		c.t.Fatalf("cannot send: %v", err)
	}
}

func (c *wsClient) sendJSON(s string) { c.send(ws.OpText, []byte(s)) }

// wsEvent is Binance's kline event, decoded with Binance's types.
type wsEvent struct {
	E      string `json:"e"`
	ETime  int64  `json:"E"`
	Symbol string `json:"s"`
	K      struct {
		T0 int64  `json:"t"`
		T1 int64  `json:"T"`
		S  string `json:"s"`
		I  string `json:"i"`
		F  int64  `json:"f"`
		L  int64  `json:"L"`
		O  string `json:"o"`
		C  string `json:"c"`
		H  string `json:"h"`
		Lo string `json:"l"`
		V  string `json:"v"`
		N  int64  `json:"n"`
		X  bool   `json:"x"`
		Q  string `json:"q"`
		BV string `json:"V"`
		BQ string `json:"Q"`
		B  string `json:"B"`
	} `json:"k"`
}

func decodeEvent(t testing.TB, p []byte) wsEvent {
	t.Helper()
	var ev wsEvent
	dec := json.NewDecoder(strings.NewReader(string(p)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("not a kline event: %v: %s", err, p)
	}
	if ev.E != "kline" {
		t.Fatalf("event type %q, want kline: %s", ev.E, p)
	}
	return ev
}

func checkEvent(t testing.TB, ev wsEvent, k *shard.Kline, symbol, interval string) {
	t.Helper()
	want := rowOf(k)
	got := ev.K
	if ev.Symbol != symbol || got.S != symbol || got.I != interval || got.T0 != k.OpenTime || got.T1 != k.CloseTime ||
		got.O != want.Open || got.C != want.Close || got.H != want.High || got.Lo != want.Low || got.V != want.Volume ||
		got.N != k.Count || got.X != k.Closed || got.Q != want.QuoteVolume || got.BV != want.TakerBuy || got.BQ != want.TakerBuyQ ||
		got.F != k.FirstTradeID || got.L != k.LastTradeID || got.B != want.Ignore {
		t.Fatalf("event %+v\ndoes not match kline %+v (%s %s)", ev, *k, symbol, interval)
	}
}

func (s *Server) wsURL(path string) string   { return "ws://" + s.Addr() + path }
func (s *Server) httpURL(path string) string { return "http://" + s.Addr() + path }
