package bench

import (
	"encoding/json"
	"fmt"
	"github.com/klagg/klagg/fakex"
	"math"
	"strings"
	"testing"
)

// t0 is Monday 2026-01-05T00:00:00Z in Unix ms, on a 5-minute boundary.
const t0 = int64(1767571200000)

func naiveTestFrame(symbol string, tradeTime int64, price, qty string, first, last int64, maker, combined bool) []byte {
	data := fmt.Sprintf(`{"e":"aggTrade","E":%d,"a":%d,"s":%q,"p":%q,"q":%q,"f":%d,"l":%d,"T":%d,"m":%v}`,
		tradeTime+3, first, symbol, price, qty, first, last, tradeTime, maker)
	if !combined {
		return []byte(data)
	}
	return fmt.Appendf(nil, `{"stream":"x@aggTrade","data":%s}`, data)
}

func TestNaiveByHand(t *testing.T) {
	frames := [][]byte{
		naiveTestFrame("AAA", t0+1000, "10", "2", 1, 1, false, true),
		naiveTestFrame("AAA", t0+20000, "12.0", "1", 2, 3, true, true),
		[]byte(`{"stream":"aaa@bookTicker","data":{"e":"bookTicker","u":1,"s":"AAA","b":"1","B":"1","a":"2","A":"1"}}`),
		naiveTestFrame("BBB", t0+30000, "100", "0.5", 10, 10, true, true),
		[]byte(`{"stream":"aaa@aggTrade","data":{"e":"aggTrade",`), // truncated: skipped
		naiveTestFrame("AAA", t0+59999, "9", "3", 4, 4, false, true),
		naiveTestFrame("AAA", t0+60000, "11", "1", 5, 5, false, true),  // closes AAA 1m #0 and, by sweep, BBB 1m #0
		naiveTestFrame("AAA", t0+300000, "8", "1", 6, 6, false, false), // bare frame; closes AAA 1m #1, AAA 5m #0, BBB 5m #0
		naiveTestFrame("AAA", t0+1000, "50", "1", 7, 7, false, true),   // late: its klines are closed, dropped
	}
	want := []naiveKline{
		{"AAA", 60000, t0, t0 + 59999, 10, 12, 9, 9, 6, 59, 5, 47, 4},
		{"BBB", 60000, t0, t0 + 59999, 100, 100, 100, 100, 0.5, 50, 0, 0, 1},
		{"AAA", 60000, t0 + 60000, t0 + 119999, 11, 11, 11, 11, 1, 11, 1, 11, 1},
		{"AAA", 300000, t0, t0 + 299999, 10, 12, 9, 11, 7, 70, 6, 58, 5},
		{"BBB", 300000, t0, t0 + 299999, 100, 100, 100, 100, 0.5, 50, 0, 0, 1},
	}
	var got []naiveKline
	res := runNaive(frames, []int64{60000, 300000}, func(k *naiveKline) { got = append(got, *k) })
	if res.Trades != 7 {
		t.Errorf("Trades = %d, want 7", res.Trades)
	}
	if len(got) != len(want) {
		t.Fatalf("closed %d klines, want %d:\n%+v", len(got), len(want), got)
	}
	// Within one sweep map order decides; match each wanted kline by key.
	for _, w := range want {
		found := false
		for _, g := range got {
			if g.Symbol == w.Symbol && g.Interval == w.Interval && g.OpenTime == w.OpenTime {
				found = true
				if !naiveKlineEqual(g, w) {
					t.Errorf("kline %s %d %d:\n got %+v\nwant %+v", w.Symbol, w.Interval, w.OpenTime, g, w)
				}
			}
		}
		if !found {
			t.Errorf("kline %s %d %d not closed", w.Symbol, w.Interval, w.OpenTime)
		}
	}
	if r := RunNaive(frames, []int64{60000, 300000}); r.Klines != 5 || r.Trades != 7 || r.Elapsed <= 0 {
		t.Errorf("RunNaive = %+v", r)
	}
}

func naiveKlineEqual(a, b naiveKline) bool {
	near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(y)) }
	return a.Symbol == b.Symbol && a.Interval == b.Interval && a.OpenTime == b.OpenTime &&
		a.CloseTime == b.CloseTime && a.Trades == b.Trades &&
		near(a.Open, b.Open) && near(a.High, b.High) && near(a.Low, b.Low) && near(a.Close, b.Close) &&
		near(a.Volume, b.Volume) && near(a.QuoteVolume, b.QuoteVolume) &&
		near(a.TakerBuyVolume, b.TakerBuyVolume) && near(a.TakerBuyQuoteVolume, b.TakerBuyQuoteVolume)
}

func TestNaiveOpenTime(t *testing.T) {
	const day = 24 * 3600 * 1000
	for _, tc := range []struct{ t, interval, want int64 }{
		{t0 + 59999, 60000, t0},
		{t0 + 60000, 60000, t0 + 60000},
		{t0 + 3*day + 5, week, t0},     // Thursday -> Monday
		{t0 + 7*day, week, t0 + 7*day}, // next Monday
		{t0 - 1, week, t0 - 7*day},     // Sunday -> previous Monday
		{t0 + 13*3600*1000, day, t0},   // 13:00 -> midnight
		{-1, 60000, -60000},            // before the epoch
		{t0 + 2*3600*1000 + 1, 3600000, t0 + 2*3600*1000},
	} {
		if got := naiveOpenTime(tc.t, tc.interval); got != tc.want {
			t.Errorf("naiveOpenTime(%d, %d) = %d, want %d", tc.t, tc.interval, got, tc.want)
		}
	}
}

// TestNaiveOnGeneratedFeed checks RunNaive against an independent count: with
// non-decreasing trade times, the klines closed are exactly the distinct
// (symbol, interval, openTime) whose end is at or before the last trade time.
func TestNaiveOnGeneratedFeed(t *testing.T) {
	cfg := fakex.DefaultGenConfig()
	cfg.Symbols = 40
	cfg.Rate = 200 // 20,000 trades = 100 s of data time
	cfg.OtherEvery = 5
	frames := fakex.NewGenerator(cfg).Frames(20_000)
	intervals := []int64{1000, 15000, 60000}
	type key struct {
		symbol   string
		interval int64
		openTime int64
	}
	seen := map[key]bool{}
	var trades int
	var watermark int64
	for _, frame := range frames {
		var env struct{ Stream string }
		if err := json.Unmarshal(frame, &env); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(env.Stream, "@aggTrade") {
			continue
		}
		var f struct {
			Data struct {
				Symbol    string `json:"s"`
				TradeTime int64  `json:"T"`
			} `json:"data"`
		}
		if err := json.Unmarshal(frame, &f); err != nil {
			t.Fatal(err)
		}
		trades++
		watermark = max(watermark, f.Data.TradeTime)
		for _, iv := range intervals {
			seen[key{f.Data.Symbol, iv, f.Data.TradeTime - f.Data.TradeTime%iv}] = true
		}
	}
	want := 0
	for k := range seen {
		if k.openTime+k.interval <= watermark {
			want++
		}
	}
	res := RunNaive(frames, intervals)
	if res.Trades != trades || res.Klines != want {
		t.Fatalf("RunNaive = %+v, want %d trades and %d klines", res, trades, want)
	}
	if want < 1000 {
		t.Fatalf("only %d klines closed: the test does not exercise closing", want)
	}
}

// BenchmarkRunNaive measures the naive baseline end to end on a synthetic feed.
//
//	go test -run '^$' -bench 'BenchmarkRunNaive' -benchtime 5x ./bench/
func BenchmarkRunNaive(b *testing.B) {
	cfg := fakex.DefaultGenConfig()
	cfg.Rate = 200 // 50,000 trades = 250 s of data time: klines close
	frames := fakex.NewGenerator(cfg).Frames(50_000)
	intervals := []int64{60_000, 300_000, 900_000, 3_600_000}
	var size int64
	for _, f := range frames {
		size += int64(len(f))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	var trades int
	for b.Loop() {
		trades += RunNaive(frames, intervals).Trades
	}
	b.ReportMetric(float64(trades)/b.Elapsed().Seconds(), "trades/s")
}
