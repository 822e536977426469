package fakex

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// genFrame is the combined envelope of a generated frame, decoded the slow way.
type genFrame struct {
	Stream string   `json:"stream"`
	Data   genTrade `json:"data"`
}

type genTrade struct {
	EventType  string `json:"e"`
	EventTime  int64  `json:"E"`
	AggID      int64  `json:"a"`
	Symbol     string `json:"s"`
	Price      string `json:"p"`
	Qty        string `json:"q"`
	FirstID    int64  `json:"f"`
	LastID     int64  `json:"l"`
	TradeTime  int64  `json:"T"`
	BuyerMaker bool   `json:"m"`
	BestMatch  *bool  `json:"M"`
}

// keyOrder returns the keys of the object at data (or of the whole frame when
// it has no envelope) in the order they appear.
func keyOrder(t *testing.T, frame []byte) []string {
	t.Helper()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	obj := frame
	if err := json.Unmarshal(frame, &env); err == nil && env.Data != nil {
		obj = env.Data
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // '{'
		t.Fatalf("bad frame %s: %v", frame, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("bad frame %s: %v", frame, err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("bad frame %s: %v", frame, err)
		}
	}
	return keys
}

var (
	futuresKeys = []string{"e", "E", "a", "s", "p", "q", "f", "l", "T", "m"}
	spotKeys    = []string{"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
)

func TestGenFramesValidAndConsistent(t *testing.T) {
	for _, market := range []string{"futures", "spot"} {
		t.Run("market="+market, func(t *testing.T) {
			cfg := DefaultGenConfig()
			cfg.Market = market
			cfg.Symbols = 50
			cfg.Seed = 7
			cfg.Rate = 500 // slow enough that times advance between frames
			g := NewGenerator(cfg)
			type next struct{ agg, trade int64 }
			seen := map[string]next{}
			priceDigits := map[string]int{}
			var lastTime int64
			for i, frame := range g.Frames(20_000) {
				var f genFrame
				if err := json.Unmarshal(frame, &f); err != nil {
					t.Fatalf("frame %d is not JSON: %v\n%s", i, err, frame)
				}
				d := f.Data
				if d.EventType != "aggTrade" {
					t.Fatalf("frame %d: e = %q", i, d.EventType)
				}
				if want := strings.ToLower(d.Symbol) + "@aggTrade"; f.Stream != want {
					t.Fatalf("frame %d: stream %q, want %q", i, f.Stream, want)
				}
				if d.TradeTime < lastTime {
					t.Fatalf("frame %d: trade time %d before %d", i, d.TradeTime, lastTime)
				}
				lastTime = d.TradeTime
				if d.EventTime < d.TradeTime || d.EventTime > d.TradeTime+10 {
					t.Fatalf("frame %d: E %d not a few ms after T %d", i, d.EventTime, d.TradeTime)
				}
				if n := d.LastID - d.FirstID + 1; n < 1 || n > 3 {
					t.Fatalf("frame %d: %d raw trades", i, n)
				}
				if prev, ok := seen[d.Symbol]; ok && (d.AggID != prev.agg || d.FirstID != prev.trade) {
					t.Fatalf("frame %d %s: a=%d f=%d, want a=%d f=%d", i, d.Symbol, d.AggID, d.FirstID, prev.agg, prev.trade)
				}
				seen[d.Symbol] = next{d.AggID + 1, d.LastID + 1}
				for _, num := range []string{d.Price, d.Qty} {
					v, err := strconv.ParseFloat(num, 64)
					if err != nil || v <= 0 {
						t.Fatalf("frame %d: number %q not positive", i, num)
					}
				}
				digits := 0
				if dot := strings.IndexByte(d.Price, '.'); dot >= 0 {
					digits = len(d.Price) - dot - 1
				}
				if market == "spot" {
					if digits != 8 || !strings.Contains(d.Qty, ".") || len(d.Qty)-strings.IndexByte(d.Qty, '.')-1 != 8 {
						t.Fatalf("frame %d: spot numbers must print 8 decimals: p=%q q=%q", i, d.Price, d.Qty)
					}
					if d.BestMatch == nil || !*d.BestMatch {
						t.Fatalf("frame %d: spot frame without \"M\":true", i)
					}
				} else {
					if d.BestMatch != nil {
						t.Fatalf("frame %d: futures frame with \"M\"", i)
					}
					if prev, ok := priceDigits[d.Symbol]; ok && prev != digits {
						t.Fatalf("frame %d %s: price %q off the tick grid of %d decimals", i, d.Symbol, d.Price, prev)
					}
					priceDigits[d.Symbol] = digits
				}
			}
			if len(seen) < 10 {
				t.Fatalf("only %d of 50 symbols traded in 20000 frames", len(seen))
			}
			if levels := map[int]bool{}; market == "futures" {
				for _, d := range priceDigits {
					levels[d] = true
				}
				if len(levels) < 4 {
					t.Fatalf("only %d price levels (tick decimals %v)", len(levels), levels)
				}
			}
		})
	}
}

func TestGenLayout(t *testing.T) {
	for _, tc := range []struct {
		market string
		want   []string
		real   string
	}{
		{"futures", futuresKeys, "futures-ws-2021-07-22.ndjson"},
		{"spot", spotKeys, "spot-ws-2021-10-12.ndjson"},
	} {
		t.Run("market="+tc.market, func(t *testing.T) {
			for _, combined := range []bool{true, false} {
				cfg := DefaultGenConfig()
				cfg.Market = tc.market
				cfg.Combined = combined
				frame := NewGenerator(cfg).Append(nil)
				if got := keyOrder(t, frame); !slices.Equal(got, tc.want) {
					t.Errorf("combined=%v: keys %v, want %v\n%s", combined, got, tc.want, frame)
				}
				if got := bytes.HasPrefix(frame, []byte(`{"stream":"s`)); got != combined {
					t.Errorf("combined=%v: envelope present = %v\n%s", combined, got, frame)
				}
			}
			// The same order must appear in Binance's own recording.
			path := filepath.Join("..", "..", "shared", "data", "binance", tc.real)
			f, err := os.Open(path)
			if err != nil {
				t.Skipf("real data absent (%v): skipping the comparison with Binance's layout", err)
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				if bytes.Contains(sc.Bytes(), []byte(`"e":"aggTrade"`)) {
					if got := keyOrder(t, sc.Bytes()); !slices.Equal(got, tc.want) {
						t.Fatalf("Binance's layout %v differs from the expected %v", got, tc.want)
					}
					return
				}
			}
			t.Fatalf("no aggTrade frame in %s", path)
		})
	}
}

func TestGenDeterministic(t *testing.T) {
	cfg := DefaultGenConfig()
	cfg.Seed = 42
	cfg.OtherEvery = 7
	a := bytes.Join(NewGenerator(cfg).Frames(5000), []byte("\n"))
	b := bytes.Join(NewGenerator(cfg).Frames(5000), []byte("\n"))
	if !bytes.Equal(a, b) {
		t.Fatal("two generators with one seed differ")
	}
	cfg.Seed = 43
	c := bytes.Join(NewGenerator(cfg).Frames(5000), []byte("\n"))
	if bytes.Equal(a, c) {
		t.Fatal("seeds 42 and 43 gave the same feed")
	}
}

func TestGenOtherEvery(t *testing.T) {
	for _, market := range []string{"futures", "spot"} {
		cfg := DefaultGenConfig()
		cfg.Market = market
		cfg.OtherEvery = 10
		kinds := map[string]int{}
		for i, frame := range NewGenerator(cfg).Frames(2000) {
			var env struct {
				Stream string         `json:"stream"`
				Data   map[string]any `json:"data"`
			}
			if err := json.Unmarshal(frame, &env); err != nil {
				t.Fatalf("%s frame %d is not JSON: %v\n%s", market, i, err, frame)
			}
			kind := env.Stream[strings.IndexByte(env.Stream, '@')+1:]
			kinds[kind]++
			isOther := (i+1)%10 == 0
			if isOther == (kind == "aggTrade") {
				t.Fatalf("%s frame %d: stream %s", market, i, env.Stream)
			}
			if kind == "depth@100ms" && env.Data["e"] != "depthUpdate" {
				t.Fatalf("%s frame %d: depth frame %s", market, i, frame)
			}
			if kind == "bookTicker" && env.Data["b"] == nil {
				t.Fatalf("%s frame %d: bookTicker frame %s", market, i, frame)
			}
		}
		if kinds["aggTrade"] != 1800 || kinds["bookTicker"] == 0 || kinds["depth@100ms"] == 0 ||
			kinds["bookTicker"]+kinds["depth@100ms"] != 200 {
			t.Fatalf("%s: frame kinds %v", market, kinds)
		}
	}
}

func TestGenSymbolsAndSkew(t *testing.T) {
	cfg := DefaultGenConfig()
	g := NewGenerator(cfg)
	names := g.Symbols()
	if len(names) != 500 || names[0] != "S0000USDT" || names[499] != "S0499USDT" {
		t.Fatalf("symbols %d: %q .. %q", len(names), names[0], names[len(names)-1])
	}
	names[0] = "changed"
	if g.Symbols()[0] != "S0000USDT" {
		t.Fatal("Symbols returned the generator's own slice")
	}
	counts := make(map[string]int)
	for _, frame := range g.Frames(50_000) {
		var f genFrame
		if err := json.Unmarshal(frame, &f); err != nil {
			t.Fatal(err)
		}
		counts[f.Data.Symbol]++
	}
	// Zipf(1.1): the hottest symbol alone takes a large share, yet the tail trades.
	if counts["S0000USDT"] < 5000 || counts["S0000USDT"] < 20*counts["S0400USDT"] || len(counts) < 300 {
		t.Fatalf("no skew: hottest %d, S0400USDT %d, %d symbols traded",
			counts["S0000USDT"], counts["S0400USDT"], len(counts))
	}
}

func TestGenZeroConfigAndSingleSymbol(t *testing.T) {
	g := NewGenerator(GenConfig{Symbols: 1})
	for i, frame := range g.Frames(100) {
		if keys := keyOrder(t, frame); !slices.Equal(keys, futuresKeys) {
			t.Fatalf("frame %d: keys %v", i, keys)
		}
		if bytes.HasPrefix(frame, []byte(`{"stream"`)) {
			t.Fatalf("zero Combined must give bare frames: %s", frame)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("unknown market did not panic")
		}
	}()
	NewGenerator(GenConfig{Market: "options"})
}

func TestGenFramesDoNotOverlap(t *testing.T) {
	frames := NewGenerator(DefaultGenConfig()).Frames(3)
	second := string(frames[1])
	frames[0] = append(frames[0], "garbage"...)
	if string(frames[1]) != second {
		t.Fatal("appending to one frame overwrote the next")
	}
}

func TestGenAppendAllocs(t *testing.T) {
	for _, market := range []string{"futures", "spot"} {
		cfg := DefaultGenConfig()
		cfg.Market = market
		cfg.OtherEvery = 3
		g := NewGenerator(cfg)
		buf := make([]byte, 0, 1024)
		if n := testing.AllocsPerRun(1000, func() { buf = g.Append(buf[:0]) }); n != 0 {
			t.Fatalf("%s: Append allocates %v times per frame", market, n)
		}
	}
}

// BenchmarkGenAppend measures one synthetic frame.
//
//	go test -run '^$' -bench 'BenchmarkGenAppend' -benchtime 2s ./bench/
func BenchmarkGenAppend(b *testing.B) {
	for _, market := range []string{"futures", "spot"} {
		b.Run("market="+market, func(b *testing.B) {
			cfg := DefaultGenConfig()
			cfg.Market = market
			g := NewGenerator(cfg)
			buf := make([]byte, 0, 1024)
			var bytesOut int64
			frames := 0
			b.ReportAllocs()
			for b.Loop() {
				buf = g.Append(buf[:0])
				bytesOut += int64(len(buf))
				frames++
			}
			b.SetBytes(bytesOut / int64(max(frames, 1)))
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
