package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// v1Row is a kline as klagg's schema version 1 stored it: every decimal as text.
func v1Row(k *shard.Kline) []any {
	closed := 0
	if k.Closed {
		closed = 1
	}
	s := func(b []byte) string { return string(b) }
	return []any{k.OpenTime, k.CloseTime,
		s(parse.AppendDecimal(nil, k.Open)), s(parse.AppendDecimal(nil, k.High)), s(parse.AppendDecimal(nil, k.Low)), s(parse.AppendDecimal(nil, k.Close)),
		s(k.Volume.AppendDecimal(nil, volumeScale)), s(k.QuoteVolume.AppendDecimal(nil, quoteScale)), k.Count,
		s(k.TakerBuyVolume.AppendDecimal(nil, volumeScale)), s(k.TakerBuyQuoteVolume.AppendDecimal(nil, quoteScale)),
		k.FirstTradeID, k.LastTradeID, k.FirstAggID, k.LastAggID, closed, int64(k.Flags)}
}

// TestStoreMigrateV1 builds a version 1 database by hand, with values at the edges
// of the version 2 integer encoding, opens it (migrating it to version 2), and
// reads every kline back exactly, through DB.Klines and through the view.
func TestStoreMigrateV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"PRAGMA journal_mode = WAL", migrations[0], fmt.Sprintf("PRAGMA application_id = %d", applicationID), "PRAGMA user_version = 1",
		"INSERT INTO series(market, symbol, interval, through) VALUES ('futures', 'BTCUSDT', '1m', 99)"} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	const t0 = 1_700_000_040_000
	var want []shard.Kline
	add := func(k shard.Kline) {
		k.OpenTime, k.CloseTime = t0+int64(len(want))*60_000, t0+int64(len(want))*60_000+59_999
		k.Closed = true
		want = append(want, k)
	}
	add(shard.Kline{Open: 6_000_012_345_678, High: 6_100_000_000_000, Low: 1, Close: 100_000_000,
		Volume: shard.Uint128{Lo: 1_630_000}, QuoteVolume: shard.Mul64(1_630_000, 6_000_012_345_678),
		TakerBuyVolume: shard.Uint128{Lo: 1_200_000_000}, TakerBuyQuoteVolume: shard.Mul64(12, unit*unit),
		Count: 3, FirstTradeID: 10, LastTradeID: 12, FirstAggID: 1, LastAggID: 5, Flags: shard.FlagREST})
	add(shard.Kline{Open: 999_999_999_999_999_999, High: 1_000_000_000_000_000_000, Low: math64, Close: math64 + 1,
		Volume: shard.Uint128{Lo: math64}, QuoteVolume: shard.Mul64(math64, unit),
		TakerBuyVolume: shard.Uint128{Lo: math64 + 1}, TakerBuyQuoteVolume: shard.Mul64(math64+1, unit),
		FirstTradeID: -1, LastTradeID: -1, FirstAggID: -1, LastAggID: -1, Flags: shard.FlagEmpty})
	add(shard.Kline{Open: parse.Decimal(^uint64(0)), High: parse.Decimal(^uint64(0)), Low: 0, Close: 0,
		Volume: shard.MaxUint128, QuoteVolume: shard.MaxUint128, TakerBuyVolume: shard.Uint128{Hi: 1}, TakerBuyQuoteVolume: shard.Uint128{Lo: 1},
		Count: 1 << 40, FirstTradeID: 1 << 50, LastTradeID: 1<<50 + 1, FirstAggID: 98, LastAggID: 99, Flags: shard.FlagOverflow | shard.FlagGap})
	for i := range want {
		args := append([]any{int64(1)}, v1Row(&want[i])...)
		if _, err := raw.Exec(`INSERT INTO klines(series, open_time, close_time, open, high, low, close, volume, quote_volume, count,
			taker_buy_volume, taker_buy_quote_volume, first_trade_id, last_trade_id, first_agg_id, last_agg_id, closed, flags)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, args...); err != nil {
			t.Fatal(err)
		}
	}
	var v1Text []string
	rows, err := raw.Query("SELECT open || ' ' || high || ' ' || low || ' ' || close || ' ' || volume || ' ' || quote_volume || ' ' || taker_buy_volume || ' ' || taker_buy_quote_volume FROM klines ORDER BY open_time")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		v1Text = append(v1Text, s)
	}
	rows.Close()
	raw.Close()

	cfg := DefaultConfig()
	cfg.Path = path
	db, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ver int
	if err := db.sql.QueryRow("PRAGMA user_version").Scan(&ver); err != nil || ver != SchemaVersion {
		t.Fatalf("user_version %d, %v; want %d", ver, err, SchemaVersion)
	}
	got, err := db.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d klines after the migration, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("kline %d after the migration:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// The view shows the texts version 1 stored, whatever the new encoding.
	rows, err = db.sql.Query("SELECT open || ' ' || high || ' ' || low || ' ' || close || ' ' || volume || ' ' || quote_volume || ' ' || taker_buy_volume || ' ' || taker_buy_quote_volume FROM klines_view ORDER BY open_time")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; rows.Next(); i++ {
		var s string
		rows.Scan(&s)
		if s != v1Text[i] {
			t.Errorf("view row %d: %q, version 1 stored %q", i, s, v1Text[i])
		}
	}
	rows.Close()
	// Values that plainly fit are integers now; the others stay text (the migration
	// converts at most 10 integer digits: 92233720368.54775807 stays text, though the
	// writer would store it as an integer).
	var types string
	if err := db.sql.QueryRow("SELECT group_concat(typeof(open) || typeof(high) || typeof(quote_volume) || typeof(taker_buy_quote_volume), ',') FROM (SELECT * FROM klines ORDER BY open_time)").Scan(&types); err != nil {
		t.Fatal(err)
	}
	if want := "integerintegertextinteger,integertexttexttext,texttexttexttext"; types != want {
		t.Errorf("types %s, want %s", types, want)
	}
	// The key index is there: a correction replaces the migrated row.
	w, err := NewWriter(ctx, db, parse.NewSymbolTable("BTCUSDT"), []shard.Interval{mustInterval(t, "1m")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fixed := want[0]
	fixed.Count, fixed.Flags = 4, fixed.Flags|shard.FlagCorrected
	if err := w.Kline(&fixed); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = db.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 10)
	if err != nil || len(got) != len(want) || got[0] != fixed {
		t.Errorf("after a correction: %v, %+v", err, got)
	}
}

const math64 = 1<<63 - 1

func mustInterval(t *testing.T, s string) shard.Interval {
	t.Helper()
	iv, err := shard.ParseInterval(s)
	if err != nil {
		t.Fatal(err)
	}
	return iv
}
