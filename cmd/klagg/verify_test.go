package main

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// replayIntoStore runs the real pipeline over the shared XRPETH aggTrades into a
// store writer and returns the database path.
func replayIntoStore(t *testing.T) string {
	t.Helper()
	trades := sharedData(t, "XRPETH-aggTrades-2019-10-11.csv")
	cfg := pipeline.DefaultConfig()
	ivs, err := shard.ParseIntervals("1m,5m")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shard.Intervals = ivs
	cfg.LearnSymbols = true
	cfg.FlushOpen = false
	cfg.Updates = true // the last kline of each interval is stored open
	sources, err := pipeline.ReplaySources([]string{trades})
	if err != nil {
		t.Fatal(err)
	}
	scfg := store.DefaultConfig()
	scfg.Path = filepath.Join(t.TempDir(), "klagg.db")
	scfg.Market = "spot"
	ctx := context.Background()
	db, err := store.Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	table := parse.NewSymbolTable()
	w, err := store.NewWriter(ctx, db, table, ivs, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(cfg, table, sources, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	c := w.Counters()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stored %d closed klines, %d open states", c.Rows, c.OpenRows)
	return scfg.Path
}

func runVerifyTo(args ...string) (string, error) {
	var out bytes.Buffer
	err := verify(context.Background(), args, &out)
	return out.String(), err
}

// TestVerifyXRPETH builds a store from real aggTrades through the pipeline and
// verifies it against Binance's own 1m and 5m klines (OHLCV printed as floats):
// every complete kline equal; then an altered row and a kline missing are reported.
func TestVerifyXRPETH(t *testing.T) {
	db := replayIntoStore(t)
	m1, m5 := sharedData(t, "XRPETH-1m-ohlcv.csv"), sharedData(t, "XRPETH-5m-ohlcv.csv")
	out, err := runVerifyTo("--db", db, "--market", "spot", "--official", m1+","+m5, "--allow-open")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	// Binance's last kline of each file was still open when it was downloaded.
	for _, want := range []string{
		"XRPETH-1m-ohlcv.csv: XRPETH 1m, 3560 klines: 3559 equal, 0 mismatched, 0 missing, 1 open",
		"XRPETH-5m-ohlcv.csv: XRPETH 5m, 712 klines: 711 equal, 0 mismatched, 0 missing, 1 open",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	// Without --allow-open the open kline fails the run.
	if out, err := runVerifyTo("--db", db, "--market", "spot", "--official", m1); err == nil || !strings.Contains(out, "still open in the store") {
		t.Errorf("open kline not reported as a failure: %v\n%s", err, out)
	}

	// Alter one row's high and volume, and add a row the store does not have.
	data, err := os.ReadFile(m1)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	f := strings.Split(lines[100], ",")
	origHigh := f[2]
	f[2] += "1"
	f[5] = "1" + f[5]
	lines[100] = strings.Join(f, ",")
	lines = append([]string{lines[0], "1570751940000,0.0014,0.0014,0.0014,0.0014,1.0"}, lines[1:]...)
	altered := filepath.Join(t.TempDir(), "XRPETH-1m-altered.csv")
	if err := os.WriteFile(altered, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runVerifyTo("--db", db, "--market", "spot", "--official", altered, "--allow-open")
	if err == nil {
		t.Fatalf("verify passed an altered file:\n%s", out)
	}
	wantLine := "XRPETH-1m-altered.csv line 102: XRPETH 1m 2019-10-11T01:39:00Z (" + f[0] + "): high store " + strings.TrimRight(strings.TrimRight(origHigh, "0"), ".") + " official " + f[2] + "; volume store "
	if !strings.Contains(out, wantLine) {
		t.Errorf("the altered row is not reported as %q:\n%s", wantLine, out)
	}
	if !strings.Contains(out, "line 2: XRPETH 1m 2019-10-10T23:59:00Z (1570751940000): missing from the store") {
		t.Errorf("the extra row is not reported missing:\n%s", out)
	}
	if !strings.Contains(out, "3561 klines: 3558 equal, 1 mismatched, 1 missing, 1 open") {
		t.Errorf("summary:\n%s", out)
	}
}

// TestVerifyBinanceLayout verifies data.binance.vision's full 12-column layout: a
// ZIP with microsecond times and no header, decimals padded as Binance pads them.
func TestVerifyBinanceLayout(t *testing.T) {
	ivs, _ := shard.ParseIntervals("1m")
	ks, _ := restSample(t, ivs)
	for i := range ks {
		ks[i].Flags = 0
	}
	db := writeStore(t, "spot", parse.NewSymbolTable("BTCUSDT"), ivs, ks)
	row := func(k shard.Kline, high string) string {
		us := func(ms int64) string { return strconv.FormatInt(ms*1000, 10) }
		pad := func(b []byte) string { return string(padDecimal(b, 0)) }
		if high == "" {
			high = pad(parse.AppendDecimal(nil, k.High))
		}
		return strings.Join([]string{us(k.OpenTime), pad(parse.AppendDecimal(nil, k.Open)), high,
			pad(parse.AppendDecimal(nil, k.Low)), pad(parse.AppendDecimal(nil, k.Close)), pad(k.Volume.AppendDecimal(nil, 8)),
			us(k.CloseTime), pad(k.QuoteVolume.AppendDecimal(nil, 16)), strconv.FormatInt(k.Count, 10),
			pad(k.TakerBuyVolume.AppendDecimal(nil, 8)), pad(k.TakerBuyQuoteVolume.AppendDecimal(nil, 16)), "0"}, ",")
	}
	writeZip := func(name string, rows []string) string {
		path := filepath.Join(t.TempDir(), name+".zip")
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.Create(name + ".csv")
		w.Write([]byte(strings.Join(rows, "\n") + "\n"))
		zw.Close()
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var rows []string
	for _, k := range ks {
		rows = append(rows, row(k, ""))
	}
	good := writeZip("BTCUSDT-1m-2021-10-22", rows)
	if out, err := runVerifyTo("--db", db, "--market", "spot", "--official", good); err != nil || !strings.Contains(out, "10 klines: 10 equal") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	rows[3] = row(ks[3], "1.5")
	bad := writeZip("BTCUSDT-1m-2021-10-23", rows)
	out, err := runVerifyTo("--db", db, "--market", "spot", "--official", bad)
	if err == nil || !strings.Contains(out, "line 4: BTCUSDT 1m") || !strings.Contains(out, "official 1.5") {
		t.Errorf("the altered row: %v\n%s", err, out)
	}
	// --symbol and --interval name a file whose name does not.
	plain := filepath.Join(t.TempDir(), "klines.csv")
	os.WriteFile(plain, []byte(shard.CSVHeader+"\n"+row(ks[0], "")+"\n"), 0o644)
	if out, err := runVerifyTo("--db", db, "--market", "spot", "--official", plain); err == nil {
		t.Errorf("a file without symbol and interval verified:\n%s", out)
	}
	if out, err := runVerifyTo("--db", db, "--market", "spot", "--official", plain, "--symbol", "BTCUSDT", "--interval", "1m"); err != nil {
		t.Errorf("verify with --symbol and --interval: %v\n%s", err, out)
	}
}
