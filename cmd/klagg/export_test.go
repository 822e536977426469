package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// sharedData returns a file of ../shared/data/binance (from the project root), or
// skips the test when the folder is absent.
func sharedData(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join("..", "..", "..", "shared", "data", "binance", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real Binance data not available (%s): %v", path, err)
	}
	return path
}

// writeStore stores klines (all of symbol 0 of table) in a new database and returns
// its path.
func writeStore(t *testing.T, market string, table *parse.SymbolTable, ivs []shard.Interval, ks []shard.Kline) string {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "klagg.db")
	cfg.Market = market
	ctx := context.Background()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := store.NewWriter(ctx, db, table, ivs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ks {
		if err := w.Kline(&ks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg.Path
}

// scaled parses a decimal string exactly into an integer scaled by 10^scale.
func scaled(t *testing.T, s string, scale int) *big.Int {
	t.Helper()
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("not a number: %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)))
	if !r.IsInt() {
		t.Fatalf("%s has more than %d decimals", s, scale)
	}
	return r.Num()
}

func u128(t *testing.T, s string, scale int) shard.Uint128 {
	n := scaled(t, s, scale)
	lo := new(big.Int).And(n, new(big.Int).SetUint64(^uint64(0)))
	return shard.Uint128{Hi: new(big.Int).Rsh(n, 64).Uint64(), Lo: lo.Uint64()}
}

// restSample reads Binance's REST klines sample into klines of symbol 0, interval 0.
func restSample(t *testing.T, ivs []shard.Interval) ([]shard.Kline, []byte) {
	t.Helper()
	raw, err := os.ReadFile(sharedData(t, "spot-rest-klines-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]json.RawMessage
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	str := func(m json.RawMessage) string {
		var s string
		if err := json.Unmarshal(m, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	num := func(m json.RawMessage) int64 {
		n, err := strconv.ParseInt(string(m), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var ks []shard.Kline
	for i, r := range rows {
		k := shard.Kline{
			Interval: 0, Closed: true, Flags: shard.FlagREST,
			OpenTime: num(r[0]), CloseTime: num(r[6]), Count: num(r[8]),
			Open:   parse.Decimal(scaled(t, str(r[1]), 8).Uint64()),
			High:   parse.Decimal(scaled(t, str(r[2]), 8).Uint64()),
			Low:    parse.Decimal(scaled(t, str(r[3]), 8).Uint64()),
			Close:  parse.Decimal(scaled(t, str(r[4]), 8).Uint64()),
			Volume: u128(t, str(r[5]), 8), QuoteVolume: u128(t, str(r[7]), 16),
			TakerBuyVolume: u128(t, str(r[9]), 8), TakerBuyQuoteVolume: u128(t, str(r[10]), 16),
			FirstTradeID: -1, LastTradeID: -1, FirstAggID: -1, LastAggID: -1,
		}
		if k.CloseTime != ivs[0].CloseTime(k.OpenTime) {
			t.Fatalf("row %d: close time %d is not the 1m close of %d", i, k.CloseTime, k.OpenTime)
		}
		ks = append(ks, k)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatal(err)
	}
	return ks, compact.Bytes()
}

func runExportTo(t *testing.T, args ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := export(context.Background(), args, &out); err != nil {
		t.Fatalf("klagg export %v: %v", args, err)
	}
	return out.Bytes()
}

// TestExportBinanceREST stores Binance's REST klines sample and exports it as JSON:
// byte for byte Binance's response; and as CSV: AppendCSV's rows.
func TestExportBinanceREST(t *testing.T) {
	ivs, _ := shard.ParseIntervals("1m")
	ks, want := restSample(t, ivs)
	db := writeStore(t, "spot", parse.NewSymbolTable("BTCUSDT"), ivs, ks)
	got := runExportTo(t, "--db", db, "--market", "spot", "--symbol", "btcusdt", "--interval", "1m", "--format", "json")
	if string(bytes.TrimSpace(got)) != string(want) {
		t.Errorf("JSON export:\n%s\nBinance:\n%s", got, want)
	}
	var csv []byte
	csv = append(csv, shard.CSVHeader+"\n"...)
	for _, k := range ks {
		csv = k.AppendCSV(csv)
		csv = append(csv, '\n')
	}
	if got := runExportTo(t, "--db", db, "--market", "spot", "--symbol", "BTCUSDT", "--interval", "1m"); string(got) != string(csv) {
		t.Errorf("CSV export:\n%s\nwant:\n%s", got, csv)
	}
	// --from and --to, as Unix ms and RFC 3339, bound the open times inclusively.
	from := time.UnixMilli(ks[2].OpenTime).UTC().Format(time.RFC3339)
	got = runExportTo(t, "--db", db, "--market", "spot", "--symbol", "BTCUSDT", "--interval", "1m", "--from", from, "--to", strconv.FormatInt(ks[4].OpenTime, 10), "--header=false")
	var rows []byte
	for _, k := range ks[2:5] {
		rows = k.AppendCSV(rows)
		rows = append(rows, '\n')
	}
	if string(got) != string(rows) {
		t.Errorf("--from %s --to %d:\n%s\nwant:\n%s", from, ks[4].OpenTime, got, rows)
	}
}

// TestExportOpenAndPages exports more klines than one page, with and without the
// open kline, and quality flags in both formats.
func TestExportOpenAndPages(t *testing.T) {
	ivs, _ := shard.ParseIntervals("1m")
	var ks []shard.Kline
	const n = exportPage + 500
	for i := range int64(n) {
		k := shard.Kline{Closed: i < n-1, OpenTime: 1_700_000_040_000 + i*60_000, Open: 1, High: 2, Low: 1, Close: 2,
			Volume: shard.Uint128{Lo: 5}, Count: 1, FirstTradeID: i, LastTradeID: i, FirstAggID: i, LastAggID: i}
		k.CloseTime = ivs[0].CloseTime(k.OpenTime)
		if i == 7 {
			k.Flags = shard.FlagGap
		}
		ks = append(ks, k)
	}
	db := writeStore(t, "futures", parse.NewSymbolTable("BTCUSDT"), ivs, ks)
	args := []string{"--db", db, "--symbol", "BTCUSDT", "--interval", "1m", "--header=false"}
	closed := bytes.Count(runExportTo(t, args...), []byte{'\n'})
	all := bytes.Count(runExportTo(t, append(args, "--open")...), []byte{'\n'})
	if closed != n-1 || all != n {
		t.Errorf("%d closed and %d in all exported, want %d and %d", closed, all, n-1, n)
	}
	var arrays [][]any
	if err := json.Unmarshal(runExportTo(t, append(args, "--format", "json")...), &arrays); err != nil {
		t.Fatal(err)
	}
	if len(arrays) != n-1 || arrays[7][11] != "gap" || arrays[8][11] != "0" || arrays[0][1] != "0.00000001" {
		t.Errorf("JSON: %d arrays, #7 %v, #8 %v", len(arrays), arrays[7], arrays[8])
	}
	if err := export(context.Background(), []string{"--db", db, "--symbol", "BTCUSDT"}, &bytes.Buffer{}); err == nil {
		t.Error("export without --interval accepted")
	}
	if err := export(context.Background(), []string{"--db", filepath.Join(t.TempDir(), "none.db"), "--symbol", "X", "--interval", "1m"}, &bytes.Buffer{}); err == nil {
		t.Error("export of a missing database succeeded")
	}
}

// TestExportVerifyHelp runs the commands as main does: -h prints the usage.
func TestExportVerifyHelp(t *testing.T) {
	for _, run := range []func(context.Context, []string) error{runExport, runVerify} {
		if err := run(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("-h: %v, want flag.ErrHelp", err)
		}
		if err := run(context.Background(), []string{"--nope"}); err == nil {
			t.Error("an unknown flag accepted")
		}
	}
}
