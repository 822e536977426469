package pipeline

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// feed makes a deterministic futures feed: symbols trading over several minutes with
// consecutive ids per symbol, some quiet minutes included.
func feed(symbols, trades int, seed uint64) (frames [][]byte, names []string) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range symbols {
		names = append(names, fmt.Sprintf("T%03dUSDT", i))
	}
	agg := make([]int64, symbols)
	price := make([]int64, symbols)
	for i := range price {
		price[i] = 10_000 + int64(i)*100
	}
	t := int64(1_700_000_000_000)
	for range trades {
		s := rng.IntN(symbols)
		if rng.IntN(50) == 0 {
			t += int64(rng.IntN(180_000)) // a quiet stretch: empty minutes
		}
		t += int64(rng.IntN(40))
		agg[s]++
		price[s] += int64(rng.IntN(21) - 10)
		if price[s] < 1 {
			price[s] = 1
		}
		f := agg[s]*3 + 100
		frames = append(frames, fmt.Appendf(nil,
			`{"stream":"%s@aggTrade","data":{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":"%d.%02d","q":"%d.%03d","f":%d,"l":%d,"T":%d,"m":%t}}`,
			strings.ToLower(names[s]), t+3, agg[s], names[s], price[s]/100, price[s]%100, 1+rng.IntN(9), rng.IntN(1000), f, f+int64(rng.IntN(3)), t, rng.IntN(2) == 0))
	}
	return frames, names
}

func table(names []string) *parse.SymbolTable {
	tb := parse.NewSymbolTable()
	tb.Add(names...)
	return tb
}

// TestBadInputNeverStopsPipeline interleaves every kind of bad frame with a good feed:
// each is counted by reason and dropped, and the klines equal those of the clean feed.
func TestBadInputNeverStopsPipeline(t *testing.T) {
	frames, names := feed(5, 3000, 1)
	cfg := testConfig(t, "1m,5m,1h")
	clean, _ := run(t, cfg, table(names), &Frames{Frames: frames})

	bad := [][]byte{
		[]byte(`{"stream":"t000usdt@aggTrade","data":{"e":"aggTrade","E":1,"a":1,"s":"T000USDT","p":"1.0`),
		[]byte(`not json at all`),
		[]byte("{\"e\":\"aggTrade\",\"s\":\"T000USDT\xff\"}"),
		[]byte(`{"e":"aggTrade","E":1,"a":99999999,"s":"NOPEUSDT","p":"1.0","q":"1","f":1,"l":1,"T":1,"m":true}`),
		[]byte(`{"e":"aggTrade","E":1,"a":99999999,"s":"T001USDT","p":"-1.0","q":"1","f":1,"l":1,"T":1,"m":true}`),
		[]byte(`{"e":"aggTrade","E":1,"a":99999999,"s":"T001USDT","p":"1e3","q":"1","f":1,"l":1,"T":1,"m":true}`),
		[]byte(`{"e":"aggTrade","E":1,"a":99999999,"s":"T001USDT","p":"1.0","q":"0","f":1,"l":1,"T":1,"m":true}`),
		[]byte(`{"e":"aggTrade","E":1,"a":99999999,"s":"T001USDT","p":"1.0","q":"1","f":1,"T":1,"m":true}`),
		append([]byte(`{"e":"aggTrade","x":"`), append(make([]byte, 100_000), `"}`...)...),
		[]byte(`{"result":null,"id":1}`),
	}
	var dirty [][]byte
	for i, f := range frames {
		dirty = append(dirty, f)
		if i%97 == 0 {
			dirty = append(dirty, bad[(i/97)%len(bad)])
		}
	}
	got, st := run(t, cfg, table(names), &Frames{Frames: dirty})
	wantErrors := uint64(0)
	for i := range frames {
		if i%97 == 0 && !strings.Contains(string(bad[(i/97)%len(bad)]), `"result"`) {
			wantErrors++
		}
	}
	if st.Errors() != wantErrors {
		t.Errorf("errors counted %d, want %d: %v", st.Errors(), wantErrors, st.Parse.Errors)
	}
	if !maps.Equal(clean.klines, got.klines) {
		t.Fatalf("bad frames changed the klines: %d vs %d klines", len(clean.klines), len(got.klines))
	}
}

// TestShardsAndSourcesAgree: the klines do not depend on how many shards aggregate
// them or on how symbols are split over sources.
func TestShardsAndSourcesAgree(t *testing.T) {
	frames, names := feed(12, 5000, 2)
	base, st := run(t, testConfig(t, "1m,3m,15m,1h"), table(names), &Frames{Frames: frames})
	if st.Shard.Trades != 5000 || len(base.klines) == 0 {
		t.Fatalf("trades %d klines %d", st.Shard.Trades, len(base.klines))
	}
	for _, shards := range []int{1, 3, 4} {
		cfg := testConfig(t, "1m,3m,15m,1h")
		cfg.Shards = shards
		// Two sources, each with half of the symbols, as two connections would be.
		var a, b [][]byte
		for _, f := range frames {
			if strings.Contains(string(f[:20]), "t00") {
				a = append(a, f)
			} else {
				b = append(b, f)
			}
		}
		got, _ := run(t, cfg, table(names), &Frames{Frames: a}, &Frames{Frames: b})
		if !maps.Equal(base.klines, got.klines) {
			t.Fatalf("shards=%d sources=2: klines differ from shards=2 sources=1 (%d vs %d)", shards, len(got.klines), len(base.klines))
		}
		for key, opens := range got.order {
			for i := 1; i < len(opens); i++ {
				if opens[i] <= opens[i-1] {
					t.Fatalf("%v closed out of order: %v", key, opens)
				}
			}
		}
	}
}

// TestCSVDir writes klines, then a correction of an already-written row.
func TestCSVDir(t *testing.T) {
	dir := t.TempDir()
	tb := table([]string{"BTCUSDT"})
	ivs, _ := shard.ParseIntervals("1m")
	s, err := NewCSVDir(dir, tb, ivs)
	if err != nil {
		t.Fatal(err)
	}
	k := shard.Kline{Closed: true, OpenTime: 60_000, CloseTime: 119_999, Open: 100, High: 200, Low: 50, Close: 150, Count: 1}
	k2 := k
	k2.OpenTime, k2.CloseTime = 120_000, 179_999
	fix := k
	fix.Close, fix.Count, fix.Flags = 199, 2, shard.FlagCorrected
	for _, x := range []*shard.Kline{&k, &k2, &fix} {
		if err := s.Kline(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "BTCUSDT-1m.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want := shard.CSVHeader + "\n" + string(fix.AppendCSV(nil)) + "\n" + string(k2.AppendCSV(nil)) + "\n"
	if string(data) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", data, want)
	}
	if !strings.HasPrefix(string(fix.AppendCSV(nil)), "60000,0.000001,0.000002,0.0000005,0.00000199,") {
		t.Fatalf("row format: %s", fix.AppendCSV(nil))
	}
}

// TestJunkSymbolsAreNotLearned: a replayed frame whose symbol is no symbol (a path,
// punctuation) is dropped as unknown, and the other symbols' klines are written.
func TestJunkSymbolsAreNotLearned(t *testing.T) {
	frames, _ := feed(2, 500, 3)
	junk := []byte(`{"e":"aggTrade","E":1700000000001,"a":1,"s":"../EVIL","p":"1.0","q":"1","f":1,"l":1,"T":1700000000000,"m":true}`)
	cfg := testConfig(t, "1m")
	cfg.LearnSymbols = true
	table := parse.NewSymbolTable()
	dir := t.TempDir()
	sink, err := NewCSVDir(dir, table, cfg.Shard.Intervals)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, table, []Source{&Frames{Frames: append([][]byte{junk}, frames...)}}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Parse.Errors[parse.ReasonOf(parse.ErrUnknownSymbol)] != 1 || st.Shard.Trades != 500 {
		t.Fatalf("unknown symbols %d trades %d", st.Parse.Errors[parse.ReasonOf(parse.ErrUnknownSymbol)], st.Shard.Trades)
	}
	if n := len(sink.Files()); n != 2 {
		t.Fatalf("%d files written, want one per real symbol", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "EVIL-1m.csv")); err == nil {
		t.Fatal("a file was written outside the output directory")
	}
}
