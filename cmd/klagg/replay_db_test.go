package main

import (
	"context"
	"fmt"
	"maps"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// synthTrade is one aggTrade of the synthetic inputs these tests write.
type synthTrade struct {
	id, first, last, time int64
	price, qty            string
	buyerMaker            bool
}

// synthTrades returns n aggTrades of one symbol from start (Unix ms), ids from
// 1000: prices with up to 5 decimals, quantities with up to 3, gaps of up to 40 s
// and now and then one of minutes (empty klines), both taker sides.
func synthTrades(seed uint64, start int64, n int) []synthTrade {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]synthTrade, n)
	price := int64(123_450) // 1.23450, in units of 10^-5
	t, tradeID := start, int64(5000)
	for i := range out {
		price = max(price+r.Int64N(41)-20, 1)
		first := tradeID
		tradeID += 1 + r.Int64N(3)
		out[i] = synthTrade{
			id: 1000 + int64(i), first: first, last: tradeID - 1, time: t,
			price:      fmt.Sprintf("%d.%05d", price/100_000, price%100_000),
			qty:        fmt.Sprintf("%d.%03d", r.Int64N(500), 1+r.Int64N(999)),
			buyerMaker: r.IntN(2) == 0,
		}
		t += r.Int64N(40_000)
		if r.IntN(50) == 0 {
			t += 3*60_000 + r.Int64N(600_000)
		}
	}
	return out
}

// writeAggTradesCSV writes trades in data.binance.vision's aggTrades layout, no header.
func writeAggTradesCSV(t *testing.T, path string, trades []synthTrade) {
	t.Helper()
	var b strings.Builder
	for _, tr := range trades {
		maker := "False"
		if tr.buyerMaker {
			maker = "True"
		}
		fmt.Fprintf(&b, "%d,%s,%s,%d,%d,%d,%s,True\n", tr.id, tr.price, tr.qty, tr.first, tr.last, tr.time, maker)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeFrames writes trades as a capture of futures combined-stream aggTrade frames.
func writeFrames(t *testing.T, path, symbol string, trades []synthTrade) {
	t.Helper()
	var b strings.Builder
	for _, tr := range trades {
		fmt.Fprintf(&b, `{"stream":"%s@aggTrade","data":{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%t}}`+"\n",
			strings.ToLower(symbol), tr.time+50, tr.id, symbol, tr.price, tr.qty, tr.first, tr.last, tr.time, tr.buyerMaker)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// csvKline is one row of a kline CSV, parsed: times and counts as integers,
// decimals as exact rationals, the ignore column as flags.
type csvKline struct {
	openTime, closeTime, count int64
	open, high, low, close     *big.Rat
	volume, quoteVolume        *big.Rat
	takerVolume, takerQuote    *big.Rat
	flags                      shard.Flags
}

func ratOf(t *testing.T, s string) *big.Rat {
	t.Helper()
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("not a decimal: %q", s)
	}
	return r
}

// readKlineCSV parses a file `klagg replay --out-dir` wrote.
func readKlineCSV(t *testing.T, path string) []csvKline {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if lines[0] != shard.CSVHeader {
		t.Fatalf("%s: header %q", path, lines[0])
	}
	var out []csvKline
	for n, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) != 12 {
			t.Fatalf("%s:%d: %d fields in %q", path, n+2, len(f), line)
		}
		ints := make([]int64, 3)
		for i, col := range []int{0, 6, 8} {
			if ints[i], err = strconv.ParseInt(f[col], 10, 64); err != nil {
				t.Fatalf("%s:%d: %v", path, n+2, err)
			}
		}
		var flags shard.Flags
		if f[11] != "0" {
			if flags, err = shard.ParseFlags(f[11]); err != nil {
				t.Fatalf("%s:%d: %v", path, n+2, err)
			}
		}
		out = append(out, csvKline{
			openTime: ints[0], closeTime: ints[1], count: ints[2],
			open: ratOf(t, f[1]), high: ratOf(t, f[2]), low: ratOf(t, f[3]), close: ratOf(t, f[4]),
			volume: ratOf(t, f[5]), quoteVolume: ratOf(t, f[7]), takerVolume: ratOf(t, f[9]), takerQuote: ratOf(t, f[10]),
			flags: flags,
		})
	}
	return out
}

// ratDecimal and ratUint128 turn a stored kline's fixed-point values into rationals.
func ratDecimal(d parse.Decimal) *big.Rat {
	return new(big.Rat).SetFrac(new(big.Int).SetUint64(uint64(d)), big.NewInt(1e8))
}

func ratUint128(u shard.Uint128, scale int) *big.Rat {
	n := new(big.Int).Lsh(new(big.Int).SetUint64(u.Hi), 64)
	n.Or(n, new(big.Int).SetUint64(u.Lo))
	return new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
}

// storedKlines reads every kline of every series of market from the database
// at path, by "SYMBOL-interval".
func storedKlines(t *testing.T, path, market string) map[string][]shard.Kline {
	t.Helper()
	ctx := context.Background()
	cfg := store.DefaultConfig()
	cfg.Path = path
	db, err := store.OpenReadOnly(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string][]shard.Kline{}
	symbols, err := db.Symbols(ctx, market)
	if err != nil {
		t.Fatal(err)
	}
	for _, sym := range symbols {
		ivs, err := db.Intervals(ctx, market, sym)
		if err != nil {
			t.Fatal(err)
		}
		for _, iv := range ivs {
			var all []shard.Kline
			for from := int64(0); ; {
				ks, err := db.Klines(ctx, market, sym, iv, from, -1, store.MaxLimit)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, ks...)
				if len(ks) < store.MaxLimit {
					break
				}
				from = ks[len(ks)-1].OpenTime + 1
			}
			out[sym+"-"+iv] = all
		}
	}
	return out
}

// assertStoreEqualsCSV checks that the database holds, for every kline file in
// dir, exactly its klines, closed, field by field, and no series without a file.
func assertStoreEqualsCSV(t *testing.T, dbPath, market, dir string) {
	t.Helper()
	stored := storedKlines(t, dbPath, market)
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no kline file in %s", dir)
	}
	rows := 0
	for _, file := range files {
		key := strings.TrimSuffix(filepath.Base(file), ".csv")
		want := readKlineCSV(t, file)
		got, ok := stored[key]
		if !ok {
			t.Errorf("%s: not in the database (it holds %v)", key, slices.Sorted(maps.Keys(stored)))
			continue
		}
		delete(stored, key)
		if len(got) != len(want) {
			t.Errorf("%s: %d klines stored, %d in the CSV", key, len(got), len(want))
			continue
		}
		rows += len(got)
		bad := 0
		for i := range want {
			w, g := &want[i], &got[i]
			scale := 2 * parse.Scale
			checks := []struct {
				name string
				ok   bool
			}{
				{"open_time", g.OpenTime == w.openTime},
				{"close_time", g.CloseTime == w.closeTime},
				{"count", g.Count == w.count},
				{"open", ratDecimal(g.Open).Cmp(w.open) == 0},
				{"high", ratDecimal(g.High).Cmp(w.high) == 0},
				{"low", ratDecimal(g.Low).Cmp(w.low) == 0},
				{"close", ratDecimal(g.Close).Cmp(w.close) == 0},
				{"volume", ratUint128(g.Volume, parse.Scale).Cmp(w.volume) == 0},
				{"quote_volume", ratUint128(g.QuoteVolume, scale).Cmp(w.quoteVolume) == 0},
				{"taker_buy_volume", ratUint128(g.TakerBuyVolume, parse.Scale).Cmp(w.takerVolume) == 0},
				{"taker_buy_quote_volume", ratUint128(g.TakerBuyQuoteVolume, scale).Cmp(w.takerQuote) == 0},
				{"flags (ignore column)", g.Flags&shard.QualityFlags == w.flags},
				{"closed", g.Closed},
			}
			for _, c := range checks {
				if !c.ok {
					line := g.AppendCSV(nil)
					t.Errorf("%s kline %d (open %d): %s differs: stored %s (closed %t), CSV row %d", key, i, w.openTime, c.name, line, g.Closed, i+2)
					bad++
				}
			}
			if bad > 20 {
				t.FailNow()
			}
		}
	}
	for key, ks := range stored {
		t.Errorf("%s: %d klines stored, no CSV file", key, len(ks))
	}
	t.Logf("%d klines of %d series equal, field by field", rows, len(files))
}

// countKlines counts the klines of every CSV file in dir.
func countKlines(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		n += len(readKlineCSV(t, f))
	}
	return n
}

// replayOK runs klagg replay and fails the test unless it exits 0.
func replayOK(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := klagg(t, append([]string{"replay"}, args...)...)
	if r.code != 0 {
		t.Fatalf("klagg replay %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// TestReplayDBMatchesCSV replays synthetic day files of two symbols into a new
// database (a bulk load), into a CSV directory, and into both at once with
// --bulk off (upserts): the database holds exactly the CSV's klines each time.
func TestReplayDBMatchesCSV(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2024, 3, 5, 0, 0, 0, 0, time.UTC).UnixMilli()
	var inputs []string
	for i, sym := range []string{"AAAUSDT", "BBBUSDT"} {
		path := filepath.Join(dir, sym+"-aggTrades-2024-03-05.csv")
		writeAggTradesCSV(t, path, synthTrades(uint64(i+1), day+3_000, 1500))
		inputs = append(inputs, path)
	}
	input := strings.Join(inputs, ",")
	common := []string{"--input", input, "--intervals", "1m,5m,15m,1h,4h", "--market", "futures"}
	out := filepath.Join(dir, "csv")
	replayOK(t, append(common, "--out-dir", out)...)

	t.Run("bulk", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "data", "klagg.db")
		r := replayOK(t, append(common, "--db", db)...)
		if !strings.Contains(r.stdout, "(bulk load,") {
			t.Errorf("a new database is not bulk loaded:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout, "output ") {
			t.Errorf("--db alone wrote CSV files:\n%s", r.stdout)
		}
		assertStoreEqualsCSV(t, db, "futures", out)
	})
	t.Run("upsert-and-csv", func(t *testing.T) {
		tmp := t.TempDir()
		db, out2 := filepath.Join(tmp, "k.db"), filepath.Join(tmp, "csv")
		r := replayOK(t, append(common, "--db", db, "--bulk", "off", "--out-dir", out2)...)
		if !strings.Contains(r.stdout, "(upsert,") {
			t.Errorf("--bulk off did not upsert:\n%s", r.stdout)
		}
		assertStoreEqualsCSV(t, db, "futures", out)
		for _, f := range []string{"AAAUSDT-1m.csv", "BBBUSDT-4h.csv"} {
			a, _ := os.ReadFile(filepath.Join(out, f))
			b, err := os.ReadFile(filepath.Join(out2, f))
			if err != nil || string(a) != string(b) {
				t.Errorf("%s: --out-dir beside --db differs from --out-dir alone (%v)", f, err)
			}
		}
	})
	t.Run("flush-open", func(t *testing.T) {
		tmp := t.TempDir()
		db, out2 := filepath.Join(tmp, "k.db"), filepath.Join(tmp, "csv")
		replayOK(t, append(common, "--db", db, "--out-dir", out2, "--flush-open")...)
		assertStoreEqualsCSV(t, db, "futures", out2)
		if a, b := countKlines(t, out2), countKlines(t, out); a <= b {
			t.Errorf("--flush-open wrote %d klines, %d without: the open ones are missing", a, b)
		}
	})
}

// TestReplayDBRealData replays the shared real Binance data (a spot
// data.binance.vision aggTrades file; a futures WebSocket capture) into a
// database and into CSV files: the same klines, field by field.
func TestReplayDBRealData(t *testing.T) {
	data := filepath.Join("..", "..", "..", "shared", "data", "binance")
	for _, tc := range []struct{ file, market, intervals string }{
		{"XRPETH-aggTrades-2019-10-11.csv", "spot", "1m,3m,5m,15m,30m,1h,2h,4h,6h,8h,12h,1d"},
		{"futures-ws-2021-07-22.ndjson", "futures", "1m,3m,5m"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			input := filepath.Join(data, tc.file)
			if _, err := os.Stat(input); err != nil {
				t.Skipf("real Binance data not available (%v): this test needs ../shared/data/binance next to the project", err)
			}
			tmp := t.TempDir()
			db, out := filepath.Join(tmp, "k.db"), filepath.Join(tmp, "csv")
			common := []string{"--input", input, "--market", tc.market, "--intervals", tc.intervals, "--flush-open"}
			replayOK(t, append(common, "--out-dir", out)...)
			replayOK(t, append(common, "--db", db)...)
			assertStoreEqualsCSV(t, db, tc.market, out)
		})
	}
}

// TestReplayDBAgain replays into a database that holds klines already: the
// same input again (upserts, then a bulk load over it) leaves every row as it
// was, and a capture that starts inside one replayed before leaves the store as
// one replay of both would have: the later capture's first klines, partial,
// do not replace the whole ones stored.
func TestReplayDBAgain(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2024, 3, 5, 10, 0, 7, 0, time.UTC).UnixMilli()
	trades := synthTrades(3, start, 2400)
	// A ends past 12:10 (its 1h kline of 11:00 closes); B starts inside A, past
	// 11:00, with a trade of A earlier in the same minute: B's first klines miss it.
	endA := slices.IndexFunc(trades, func(tr synthTrade) bool { return tr.time > start+130*60_000 })
	fromB := -1
	for i := 1; i < len(trades) && fromB < 0; i++ {
		if trades[i].time > start+60*60_000 && trades[i-1].time/60_000 == trades[i].time/60_000 {
			fromB = i
		}
	}
	if endA < 0 || fromB < 0 || fromB >= endA || trades[len(trades)-1].time < start+4*60*60_000 {
		t.Fatalf("the synthetic trades do not span the windows the test needs (%d..%d)", trades[0].time, trades[len(trades)-1].time)
	}
	inA, inB, inAll := filepath.Join(dir, "a.ndjson"), filepath.Join(dir, "b.ndjson"), filepath.Join(dir, "all.ndjson")
	writeFrames(t, inA, "CCCUSDT", trades[:endA])
	writeFrames(t, inB, "CCCUSDT", trades[fromB:])
	writeFrames(t, inAll, "CCCUSDT", trades)
	common := []string{"--intervals", "1m,5m,1h", "--market", "futures"}

	db := filepath.Join(dir, "k.db")
	replayOK(t, append(common, "--input", inA, "--db", db)...)
	before := storedKlines(t, db, "futures")
	for _, bulk := range []string{"auto", "on"} {
		replayOK(t, append(common, "--input", inA, "--db", db, "--bulk", bulk)...)
		if after := storedKlines(t, db, "futures"); !reflect.DeepEqual(after, before) {
			t.Fatalf("the same replay again (--bulk %s) changed the stored klines", bulk)
		}
	}

	r := replayOK(t, append(common, "--input", inB, "--db", db)...)
	if !strings.Contains(r.stdout, "stored whole klines kept over this replay's partial ones") {
		t.Errorf("the overlapping replay did not say it kept whole klines:\n%s", r.stdout)
	}
	out := filepath.Join(dir, "all")
	replayOK(t, append(common, "--input", inAll, "--out-dir", out)...)
	assertStoreEqualsCSV(t, db, "futures", out)
}

// TestReplayDBLocked: a database a running klagg holds fails at once, with the
// holder's pid, before any input is read or output written.
func TestReplayDBLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(dir, "k.db")
	held, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	out := filepath.Join(dir, "csv")
	// The input does not exist: were it read first, that would be the error.
	r := klagg(t, "replay", "--input", filepath.Join(dir, "missing.csv"), "--db", cfg.Path, "--out-dir", out)
	if r.code != 1 || !strings.Contains(r.stderr, "locked by process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("exit %d, stderr %q: want 1 and the lock's holder", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the output directory was created")
	}
}

// TestReplayDBUsage: command-line mistakes about --db exit 2 before anything is
// touched; replay without --out-dir or --db stays an error, as before --db.
func TestReplayDBUsage(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "X-aggTrades-2024-03-05.csv")
	writeAggTradesCSV(t, in, synthTrades(1, time.Date(2024, 3, 5, 0, 0, 1, 0, time.UTC).UnixMilli(), 10))
	db := filepath.Join(dir, "k.db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--input", in}, "--input and --out-dir are required"},
		{[]string{"--input", in, "--db", ""}, "--input and --out-dir are required"},
		{[]string{"--input", in, "--db", "", "--out-dir", filepath.Join(dir, "o")}, "--db is empty"},
		{[]string{"--input", in, "--db", db, "--bulk", "maybe"}, `--bulk "maybe"`},
		{[]string{"--input", in, "--out-dir", filepath.Join(dir, "o"), "--bulk", "on"}, "--bulk needs a --db"},
		{[]string{"--input", in, "--out-dir", filepath.Join(dir, "o"), "--retention", "1m=1h"}, "--retention needs a --db"},
		{[]string{"--input", in, "--db", db, "--intervals", "1m", "--retention", "1h=1h"}, "1h is not one of the intervals"},
	} {
		r := klagg(t, append([]string{"replay"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("replay %q: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	for _, p := range []string{db, filepath.Join(dir, "o")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created by a command-line mistake", p)
		}
	}
}
