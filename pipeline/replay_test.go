package pipeline

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/record"
)

// splitByDay writes the rows of an aggTrades CSV into one file per UTC day of their
// trade time, named as data.binance.vision names them, and returns the paths in
// date order.
func splitByDay(t *testing.T, src, dir, symbol string) []string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	days := map[string]*strings.Builder{}
	for _, row := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Split(row, ",")
		ms, err := strconv.ParseInt(fields[5], 10, 64)
		if err != nil {
			t.Fatalf("row %q: %v", row, err)
		}
		day := time.UnixMilli(ms).UTC().Format("2006-01-02")
		if days[day] == nil {
			days[day] = &strings.Builder{}
		}
		days[day].WriteString(row + "\n")
	}
	var paths []string
	for day, b := range days {
		path := filepath.Join(dir, symbol+"-aggTrades-"+day+".csv")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	slices.Sort(paths)
	return paths
}

// TestReplayDaysOutOfOrder replays the real XRPETH trades split into day files and
// given newest first: ReplaySources reads them by date, so no trade becomes a
// duplicate and the klines equal those of the single file. Before, 10,063 of the
// 12,477 trades were skipped as duplicates.
func TestReplayDaysOutOfOrder(t *testing.T) {
	whole := dataFile(t, "XRPETH-aggTrades-2019-10-11.csv")
	days := splitByDay(t, whole, t.TempDir(), "XRPETH")
	if len(days) < 2 {
		t.Fatalf("the recording spans %d days, want several", len(days))
	}
	reversed := slices.Clone(days)
	slices.Reverse(reversed)
	sources, err := ReplaySources(reversed)
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) != 1 {
		t.Fatalf("%d sources for one symbol", len(sources))
	}
	if got := sources[0].(*Replay).Paths; !slices.Equal(got, days) {
		t.Errorf("reads %v, want %v", got, days)
	}
	want, _ := run(t, testConfig(t, "1m,5m,1h"), parse.NewSymbolTable(), &Replay{Paths: []string{whole}})
	got, st := run(t, testConfig(t, "1m,5m,1h"), parse.NewSymbolTable(), sources...)
	if st.Shard.Duplicates != 0 || st.Shard.Late != 0 || st.Shard.TooLate != 0 || st.Shard.Trades != 12477 {
		t.Fatalf("trades %d duplicates %d late %d too late %d, want 12477 applied and none else",
			st.Shard.Trades, st.Shard.Duplicates, st.Shard.Late, st.Shard.TooLate)
	}
	if len(got.klines) != len(want.klines) {
		t.Fatalf("%d klines, the single file gives %d", len(got.klines), len(want.klines))
	}
	for key, k := range want.klines {
		if got.klines[key] != k {
			t.Fatalf("%s differs from the single file's", key)
		}
	}
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestReplaySourcesOrder checks how inputs are grouped and ordered, and which
// combinations are refused.
func TestReplaySourcesOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const row = "1,0.1,1,1,1,1570752011620,True,True\n"
	const frame = `{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"}}` + "\n"
	btc2 := write("BTCUSDT-aggTrades-2025-01-02.csv", row)
	btc1 := write("BTCUSDT-aggTrades-2025-01-01.csv", row)
	btc31 := write("BTCUSDT-aggTrades-2024-12-31.csv", row)
	btcDec := write("BTCUSDT-aggTrades-2024-11.csv", row)
	eth1 := write("ETHUSDT-aggTrades-2025-01-01.csv", row)
	ethB := write("ETHUSDT-part-b.csv", row)
	ethA := write("ETHUSDT-part-a.csv", row)
	capB := write("capture-b.ndjson", frame)
	capA := write("capture-a.ndjson", frame)
	capDir := filepath.Join(dir, "captures.ndjson")
	if err := os.Mkdir(capDir, 0o755); err != nil {
		t.Fatal(err)
	}

	sources, err := ReplaySources([]string{capB, btc2, ethB, btc1, capA, btcDec, ethA, btc31})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, s := range sources {
		got = append(got, s.(*Replay).Paths)
	}
	want := [][]string{
		{capB, capA},                // frames: as given
		{btcDec, btc31, btc1, btc2}, // by date, the month first
		{ethB, ethA},                // undated: as given
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("sources read\n%v\nwant\n%v", got, want)
	}

	for _, tc := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"same day twice", []string{btc1, write("BTCUSDT-aggTrades-2025-01-01.csv.gz", gzipped(t, row))}, "overlap"},
		{"month and its day", []string{btc1, write("BTCUSDT-aggTrades-2025-01.csv", row)}, "overlap"},
		{"dated and undated", []string{eth1, ethA}, "has no date"},
		{"path twice", []string{capA, btc1, filepath.Join(dir, ".", filepath.Base(capA))}, "given twice"},
		{"directory", []string{btc1, capDir}, "is a directory"},
	} {
		_, err := ReplaySources(tc.paths)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := ReplaySources([]string{btc1, write("BTCUSDT-aggTrades-2025-01-03.txt", row)}); !errors.Is(err, record.ErrName) {
		t.Errorf("a .txt input: %v, want record.ErrName", err)
	}
}
