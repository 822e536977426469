package shard

import (
	"bufio"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klagg/klagg/parse"
)

var dataDir = filepath.Join("..", "..", "shared", "data", "binance")

func openData(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, name))
	if os.IsNotExist(err) {
		t.Skipf("real Binance data %s absent (see ../shared/data/binance/README.md from the project root): skipping", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestBinanceXRPETH aggregates 12,477 real XRPETH aggTrades and compares
// every complete 1m and 5m kline (empty ones included) with Binance's own.
func TestBinanceXRPETH(t *testing.T) {
	var trades []parse.Trade
	sc := bufio.NewScanner(openData(t, "XRPETH-aggTrades-2019-10-11.csv"))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if len(f) != 8 {
			t.Fatalf("bad line %q", sc.Text())
		}
		n := func(s string) int64 {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		trades = append(trades, parse.Trade{AggID: n(f[0]), Price: dec(f[1]), Qty: dec(f[2]), FirstID: n(f[3]), LastID: n(f[4]),
			TradeTime: n(f[5]), EventTime: n(f[5]), BuyerMaker: f[6] == "True"})
	}
	ivs, _ := ParseIntervals("1m,5m")
	rec := newRecorder(t, ivs)
	a, err := New(Config{Intervals: ivs, Grace: 2000, History: 2}, rec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range trades {
		a.Apply(&trades[i])
		a.Advance(trades[i].TradeTime)
	}
	a.Flush(trades[len(trades)-1].TradeTime, false)
	if c := a.Counters(); c.Trades != 12477 || c.Duplicates != 0 || c.IDGaps != 0 || c.Late != 0 {
		t.Fatalf("counters %+v", c)
	}

	for i, name := range []string{"XRPETH-1m-ohlcv.csv", "XRPETH-5m-ohlcv.csv"} {
		sc := bufio.NewScanner(openData(t, name))
		var rows [][]string
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "open_time") {
				rows = append(rows, strings.Split(sc.Text(), ","))
			}
		}
		rows = rows[:len(rows)-1] // the last kline was still open
		empty := 0
		for _, r := range rows {
			open, _ := strconv.ParseInt(r[0], 10, 64)
			k, ok := rec.final[klineKey{0, uint8(i), open}]
			if !ok {
				t.Fatalf("%s: no kline at %d", name, open)
			}
			if k.Flags&FlagEmpty != 0 {
				empty++
			}
			got := []float64{decFloat(k.Open), decFloat(k.High), decFloat(k.Low), decFloat(k.Close), u128Float(k.Volume, 8)}
			for j, g := range got {
				w, err := strconv.ParseFloat(r[j+1], 64)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(g-w) > 1e-12*math.Max(1, math.Abs(w)) {
					t.Fatalf("%s at %d column %d: got %v, Binance %v (%+v)", name, open, j+1, g, w, k)
				}
			}
		}
		if i == 0 && empty != 1091 {
			t.Errorf("%d empty 1m klines, Binance has 1091", empty)
		}
		t.Logf("%s: %d klines match (%d empty)", name, len(rows), empty)
	}
}

func decFloat(d parse.Decimal) float64 { return float64(d) / 1e8 }

func u128Float(x Uint128, scale int) float64 {
	f, _ := new(big.Rat).SetFrac(u128Big(x), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)).Float64()
	return f
}
