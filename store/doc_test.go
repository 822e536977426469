package store_test

import (
	"bufio"
	"database/sql"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// TestStoreDocQueries runs every sqlite3 query of the package documentation on a
// small database, with the sqlite3 shell when it is installed (as a user would) and
// through the driver otherwise, and checks the view's names and values.
func TestStoreDocQueries(t *testing.T) {
	ivs := testIntervals(t, "1m,1d")
	cfg := testConfig(t)
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	k := kl(ivs, 0, 0, t0, 1, 5, true)
	k.Flags = shard.FlagGap | shard.FlagREST | shard.FlagCorrected
	h.put(k, kl(ivs, 0, 0, t0+60_000, 0, -1, true), kl(ivs, 0, 0, t0+120_000, 6, 7, false), kl(ivs, 0, 1, 1_699_920_000_000, 1, 7, false))
	h.sync()

	f, err := os.Open("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var queries []string
	sc := bufio.NewScanner(f)
	const prefix = "//\tsqlite3 data/klagg.db \""
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			queries = append(queries, strings.TrimSuffix(strings.TrimPrefix(line, prefix), "\""))
		}
	}
	if len(queries) < 5 {
		t.Fatalf("found %d queries in doc.go", len(queries))
	}
	shell, _ := exec.LookPath("sqlite3")
	db, err := sql.Open("sqlite3", "file:"+cfg.Path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range queries {
		if shell != "" {
			out, err := exec.Command(shell, "-readonly", cfg.Path, q).CombinedOutput()
			if err != nil || strings.Contains(string(out), "Error") {
				t.Errorf("sqlite3 %q: %v\n%s", q, err, out)
			}
			t.Logf("%s\n%s", q, out)
			continue
		}
		rows, err := db.Query(q)
		if err != nil {
			t.Errorf("%q: %v", q, err)
			continue
		}
		rows.Close()
	}
	var flags, state, source, open, utc string
	err = db.QueryRow("SELECT flags, state, source, open, open_utc FROM klines_view WHERE symbol = 'BTCUSDT' AND interval = '1m' AND open_time = ?", t0).Scan(&flags, &state, &source, &open, &utc)
	if err != nil {
		t.Fatal(err)
	}
	if flags != "corrected|gap|rest" || state != "closed" || source != "rest" || open != k.Open.String() || utc != "2023-11-14 22:14:00" {
		t.Errorf("view row: flags %q state %q source %q open %q utc %q", flags, state, source, open, utc)
	}
	if err := db.QueryRow("SELECT flags, source FROM klines_view WHERE open_time = ?", t0+60_000).Scan(&flags, &source); err != nil || flags != "empty" || source != "trades" {
		t.Errorf("empty kline in the view: %q %q %v", flags, source, err)
	}
	if err := db.QueryRow("SELECT flags, state FROM klines_view WHERE open_time = ?", t0+120_000).Scan(&flags, &state); err != nil || flags != "-" || state != "open" {
		t.Errorf("open kline in the view: %q %q %v", flags, state, err)
	}
}
