package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

func csvRows(ks ...shard.Kline) string {
	var b []byte
	b = append(b, shard.CSVHeader...)
	b = append(b, '\n')
	for _, k := range ks {
		b = k.AppendCSV(b)
		b = append(b, '\n')
	}
	return string(b)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newCSV(t *testing.T, dir string, table *parse.SymbolTable, ivs []shard.Interval, every time.Duration) *store.CSVDir {
	t.Helper()
	s, err := store.NewCSVDir(dir, table, ivs, store.CSVConfig{FlushEvery: every}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStoreCSVDirRestart runs two sinks one after the other into one directory, the
// second replaying part of what the first wrote, with a correction, a mark, new rows
// and a partial line a crash left.
func TestStoreCSVDirRestart(t *testing.T) {
	dir := t.TempDir()
	ivs := testIntervals(t, "1m,5m")
	table := parse.NewSymbolTable("BTCUSDT", "ETHUSDT")
	var want []shard.Kline
	for i := range int64(10) {
		want = append(want, kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true))
	}
	put := func(s *store.CSVDir, ks ...shard.Kline) {
		t.Helper()
		for i := range ks {
			if err := s.Kline(&ks[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := newCSV(t, dir, table, ivs, time.Hour)
	put(s, want...)
	put(s, kl(ivs, 1, 1, t0, 1, 2, true))
	open := kl(ivs, 0, 0, t0+10*60_000, 100, 101, false)
	put(s, open) // running updates are not written
	fix := kl(ivs, 0, 0, t0+3*60_000, 30, 40, true)
	fix.Flags |= shard.FlagCorrected
	put(s, fix)
	want[3] = fix
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	btc := filepath.Join(dir, "BTCUSDT-1m.csv")
	if got := readFile(t, btc); got != csvRows(want...) {
		t.Fatalf("first run:\n%s\nwant\n%s", got, csvRows(want...))
	}
	if c := s.Counters(); c.Rows != 11 || c.Corrected != 1 || c.Rewrites != 1 {
		t.Errorf("first run counters %+v", c)
	}

	// A crash in the middle of an append leaves half a row.
	f, err := os.OpenFile(btc, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("1700000640000,60000.1")
	f.Close()

	s = newCSV(t, dir, table, ivs, time.Hour)
	// The restart replays klines 5..9 (9 now different), then goes on with 10..12.
	replay := append([]shard.Kline(nil), want[5:]...)
	replay[4] = kl(ivs, 0, 0, t0+9*60_000, 90, 99, true)
	replay[4].Close += 1
	want[9] = replay[4]
	put(s, replay...)
	for i := int64(10); i < 13; i++ {
		k := kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true)
		put(s, k)
		want = append(want, k)
	}
	put(s, shard.Kline{Symbol: 0, Interval: 0, OpenTime: t0 + 2*60_000, CloseTime: t0 + 3*60_000 - 1, Closed: true, Mark: true, Flags: shard.FlagGap})
	want[2].Flags |= shard.FlagGap
	put(s, kl(ivs, 1, 1, t0, 1, 2, true)) // identical
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, btc)
	if got != csvRows(want...) {
		t.Fatalf("after the restart:\n%s\nwant\n%s", got, csvRows(want...))
	}
	if !strings.Contains(got, ",gap\n") {
		t.Error("the mark is not in the ignore column")
	}
	if got := readFile(t, filepath.Join(dir, "ETHUSDT-5m.csv")); got != csvRows(kl(ivs, 1, 1, t0, 1, 2, true)) {
		t.Errorf("ETHUSDT 5m:\n%s", got)
	}
	c := s.Counters()
	if c.Rows != 3 || c.Duplicates != 5 || c.Corrected != 1 || c.Marked != 1 || c.Truncated != 1 {
		t.Errorf("second run counters %+v", c)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the directory, want 2 (no temporary files left)", len(entries))
	}
}

// TestStoreCSVDirFlushes checks that rows reach the file without Close, and that a
// file that is not a kline file is never appended to.
func TestStoreCSVDirFlushes(t *testing.T) {
	dir := t.TempDir()
	ivs := testIntervals(t, "1m")
	table := parse.NewSymbolTable("BTCUSDT", "ETHUSDT")
	s := newCSV(t, dir, table, ivs, 10*time.Millisecond)
	defer s.Close()
	k := kl(ivs, 0, 0, t0, 1, 2, true)
	if err := s.Kline(&k); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "BTCUSDT-1m.csv")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := os.ReadFile(path); string(b) == csvRows(k) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the row was not flushed before Close")
		}
		time.Sleep(5 * time.Millisecond)
	}
	other := filepath.Join(dir, "ETHUSDT-1m.csv")
	if err := os.WriteFile(other, []byte("something else\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k = kl(ivs, 1, 0, t0, 1, 2, true)
	if err := s.Kline(&k); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("appending to a foreign file: %v", err)
	}
	if got := readFile(t, other); got != "something else\n" {
		t.Errorf("the foreign file changed: %q", got)
	}
}
