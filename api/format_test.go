package api

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// Binance's own example rows and events, decoded into the same Go types,
// fix the field order and the JSON types klagg must produce.
func TestFormatsMatchBinance(t *testing.T) {
	k := shard.Kline{OpenTime: 1499040000000, CloseTime: 1499644799999,
		Open: dec("0.0163479"), High: dec("0.8"), Low: dec("0.015758"), Close: dec("0.015771"),
		Volume: shard.Uint128{Lo: 14897611427815}, QuoteVolume: shard.Mul64(243419055334, 100_000_000),
		TakerBuyVolume: shard.Uint128{Lo: 175687402397}, TakerBuyQuoteVolume: shard.Mul64(2846694368, 100_000_000),
		Count: 308, FirstTradeID: 100, LastTradeID: 200}
	got := string(AppendRESTKline(nil, &k))
	want := `[1499040000000,"0.0163479","0.8","0.015758","0.015771","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]`
	if got != want {
		t.Fatalf("REST row\n got %s\nwant %s", got, want)
	}
	k.Closed = true
	ev := string(AppendKlineEvent(nil, &k, "BNBBTC", "1m", 1672515782136))
	wantEv := `{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1499040000000,"T":1499644799999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0163479","c":"0.015771","h":"0.8","l":"0.015758","v":"148976.11427815","n":308,"x":true,"q":"2434.19055334","V":"1756.87402397","Q":"28.46694368","B":"0"}}`
	if ev != wantEv {
		t.Fatalf("event\n got %s\nwant %s", ev, wantEv)
	}
	if !json.Valid([]byte(ev)) || !json.Valid([]byte(got)) {
		t.Fatal("invalid JSON")
	}
	k.Flags = shard.FlagGap | shard.FlagEmpty
	if row := decodeRows(t, []byte("["+string(AppendRESTKline(nil, &k))+"]")); row[0].Ignore != "gap" {
		t.Fatalf("ignore field %q, want the quality flag", row[0].Ignore)
	}
	_ = parse.Scale
}

// appendScaled and appendUint128 must print exactly what Uint128.AppendDecimal prints.
func TestAppendScaled(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100_000; i++ {
		v := rng.Uint64() >> rng.IntN(64)
		for _, scale := range []int{0, 8, 16, 19} {
			want := string(shard.Uint128{Lo: v}.AppendDecimal(nil, scale))
			if got := string(appendScaled(nil, v, scale)); got != want {
				t.Fatalf("appendScaled(%d, %d) = %s, want %s", v, scale, got, want)
			}
		}
		x := shard.Uint128{Hi: rng.Uint64() >> rng.IntN(64), Lo: rng.Uint64()}
		if rng.IntN(8) == 0 {
			x = shard.MaxUint128
		}
		for _, scale := range []int{0, 8, 16} {
			want := `"` + string(x.AppendDecimal(nil, scale)) + `"`
			if got := string(appendUint128(nil, x, scale)); got != want {
				t.Fatalf("appendUint128(%v, %d) = %s, want %s", x, scale, got, want)
			}
		}
	}
}

// BenchmarkUint128Format: the 128/64-division fast path beside shard's general
// one, on a quote volume above 2^64 (scale 16).
func BenchmarkUint128Format(b *testing.B) {
	v := shard.Mul64(30000_12345678, 1_23456789)
	b.Run("impl=appendUint128", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		for b.Loop() {
			buf = appendUint128(buf[:0], v, 16)
		}
	})
	b.Run("impl=Uint128.AppendDecimal", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		for b.Loop() {
			buf = v.AppendDecimal(buf[:0], 16)
		}
	})
}

func BenchmarkAppendKlineEvent(b *testing.B) {
	k := mkKline(b, 0, 0, t0, 5, true)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendKlineEvent(buf[:0], &k, "BTCUSDT", "1m", t0)
	}
	b.SetBytes(int64(len(buf)))
}
