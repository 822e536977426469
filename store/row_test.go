package store

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// TestStoreRowCodec round-trips klines through dbRow at the edges of the integer
// encoding (an int64 of 10^-8 units) and at random, and checks which decimals went
// to text.
func TestStoreRowCodec(t *testing.T) {
	const maxI = math.MaxInt64
	type dec struct {
		price            parse.Decimal
		vol, quote       shard.Uint128
		priceInt, volInt bool
		quoteInt         bool
	}
	cases := []dec{
		{price: 0, vol: shard.Uint128{}, quote: shard.Uint128{}, priceInt: true, volInt: true, quoteInt: true},
		{price: maxI, vol: shard.Uint128{Lo: maxI}, quote: shard.Mul64(maxI, unit), priceInt: true, volInt: true, quoteInt: true},
		{price: maxI + 1, vol: shard.Uint128{Lo: maxI + 1}, quote: shard.Mul64(maxI+1, unit)},
		{price: parse.Decimal(^uint64(0)), vol: shard.MaxUint128, quote: shard.MaxUint128},
		{price: 1, vol: shard.Uint128{Hi: 1}, quote: shard.Uint128{Lo: 1}, priceInt: true}, // quote 1e-16: text
		{price: 1, vol: shard.Uint128{Lo: 1}, quote: shard.Uint128{Lo: unit}, priceInt: true, volInt: true, quoteInt: true},
		{price: 1, vol: shard.Uint128{Lo: 1}, quote: shard.Uint128{Lo: unit + 1}, priceInt: true, volInt: true},
	}
	r := rand.New(rand.NewPCG(3, 4))
	u64 := func() uint64 { return r.Uint64() >> r.UintN(64) } // every magnitude
	for range 5000 {
		c := dec{price: parse.Decimal(u64()), vol: shard.Uint128{Lo: u64()}, quote: shard.Uint128{Lo: u64()}}
		if r.UintN(2) == 0 {
			c.vol.Hi, c.quote.Hi = u64(), u64()
		}
		if r.UintN(2) == 0 { // at most 8 decimals: may be an integer
			c.quote = shard.Mul64(u64(), unit)
		}
		cases = append(cases, c)
	}
	var text []byte
	for i, c := range cases {
		k := shard.Kline{
			OpenTime: 1_700_000_000_000 + int64(i), CloseTime: 1_700_000_059_999, Closed: i%2 == 0, Flags: shard.Flags(i),
			Open: c.price, High: c.price, Low: c.price / 2, Close: c.price,
			Volume: c.vol, TakerBuyVolume: c.vol, QuoteVolume: c.quote, TakerBuyQuoteVolume: c.quote,
			Count: int64(i), FirstTradeID: -1, LastTradeID: math.MaxInt64, FirstAggID: int64(i) - 1, LastAggID: 7,
		}
		var row dbRow
		text = encodeRow(&row, text[:0], 42, &k)
		if row[slotSeries] != 42 {
			t.Fatalf("series slot %d", row[slotSeries])
		}
		var got shard.Kline
		if err := decodeRow(&got, &row, text); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if got != k {
			t.Fatalf("case %d:\n got %+v\nwant %+v", i, got, k)
		}
		if i >= 7 {
			continue
		}
		mask := row[slotText]
		if (mask&1 == 0) != c.priceInt || (mask&(1<<4) == 0) != c.volInt || (mask&(1<<5) == 0) != c.quoteInt {
			t.Errorf("case %d: text mask %08b, want price int %v, volume int %v, quote int %v", i, mask, c.priceInt, c.volInt, c.quoteInt)
		}
	}
	// Rows a reader must refuse: negative units, flags out of range, a text
	// reference past the buffer, text that is no exact decimal.
	var k shard.Kline
	base := func() dbRow {
		var row dbRow
		text = encodeRow(&row, text[:0], 1, &shard.Kline{Open: parse.Decimal(^uint64(0))})
		return row
	}
	bad := []func(r *dbRow){
		func(r *dbRow) { r[slotHigh] = -1 },
		func(r *dbRow) { r[slotVolume] = -5 },
		func(r *dbRow) { r[slotFlags] = 256 },
		func(r *dbRow) { r[slotOpen] = textRef(0, 1000) },
	}
	for i, f := range bad {
		row := base()
		f(&row)
		if err := decodeRow(&k, &row, text); err == nil {
			t.Errorf("bad row %d decoded: %+v", i, k)
		}
	}
	row := base()
	text = append(text, "1e5"...)
	row[slotText] |= 1 << 1
	row[slotHigh] = textRef(len(text)-3, len(text))
	if err := decodeRow(&k, &row, text); err == nil {
		t.Errorf("\"1e5\" decoded as %v", k.High)
	}
}
