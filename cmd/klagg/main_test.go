package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplayCommand runs `klagg replay` on the shared XRPETH CSV and checks the files
// it writes: one per interval, the header, and every closed kline in order.
func TestReplayCommand(t *testing.T) {
	input := filepath.Join("..", "..", "..", "shared", "data", "binance", "XRPETH-aggTrades-2019-10-11.csv")
	if _, err := os.Stat(input); err != nil {
		t.Skipf("real Binance data not available (%v): this test needs ../shared/data/binance next to the project", err)
	}
	out := t.TempDir()
	if err := runReplay(context.Background(), []string{"--input", input, "--out-dir", out, "--intervals", "1m,5m", "--market", "spot"}); err != nil {
		t.Fatal(err)
	}
	for iv, rows := range map[string]int{"1m": 3559, "5m": 711} {
		data, err := os.ReadFile(filepath.Join(out, "XRPETH-"+iv+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if lines[0] != "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore" {
			t.Fatalf("header %q", lines[0])
		}
		if len(lines)-1 != rows {
			t.Errorf("%s: %d klines, want %d", iv, len(lines)-1, rows)
		}
	}
	// The first 1m kline is Binance's: open 0.00141342, high 0.00141557, low 0.00141266, close 0.00141418, volume 1482.
	data, _ := os.ReadFile(filepath.Join(out, "XRPETH-1m.csv"))
	if !bytes.Contains(data, []byte("\n1570752000000,0.00141342,0.00141557,0.00141266,0.00141418,1482,1570752059999,")) {
		t.Errorf("first 1m kline is not Binance's:\n%.300s", data)
	}
}

// TestDemoCommand runs a small `klagg demo`: files are written for every symbol.
func TestDemoCommand(t *testing.T) {
	out := t.TempDir()
	if err := runDemo(context.Background(), []string{"--symbols", "5", "--trades", "20000", "--rate", "50", "--intervals", "1m,5m", "--out-dir", out}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.csv"))
	if len(files) != 10 {
		t.Fatalf("%d files, want 5 symbols x 2 intervals", len(files))
	}
}
