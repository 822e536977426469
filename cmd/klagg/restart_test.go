package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klagg/klagg/api"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// TestRestartSIGKILL kills the daemon with SIGKILL at random moments while it
// follows fakex, restarts it each time on the same database, and checks that the
// database ends up with the klines of a run that never stopped: every closed
// kline equal, field by field, to a replay of every trade fakex produced, and
// none missing. A restart resumes each symbol from its last stored trade and
// fetches what it missed while down from REST.
func TestRestartSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the daemon for half a minute")
	}
	const ivs = "1s,1m,5m"
	for _, seed := range []uint64{1, 2, uint64(time.Now().UnixNano() % 1000)} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			fcfg := fakex.DefaultConfig()
			fcfg.Symbols, fcfg.Rate, fcfg.History, fcfg.Seed = 12, 300, 1<<20, int64(seed)
			srv := startFakex(t, fcfg)
			db := filepath.Join(t.TempDir(), "k.db")
			if d := os.Getenv("KLAGG_KEEP"); d != "" {
				db = filepath.Join(d, fmt.Sprintf("restart-%d.db", seed))
				os.Remove(db)
			}
			args := []string{"run", "--ws-url", srv.WSURL(), "--rest-url", srv.RESTURL(), "--db", db,
				"--listen", "", "--intervals", ivs, "--log-level", "warn",
				"--backfill", "0"} // klines from trades only: REST's carry no aggTrade ids to compare
			kills := 3 + r.IntN(2)
			for i := range kills {
				cmd, _, stderr := klaggCommand(context.Background(), args...)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(1200+r.IntN(2500)) * time.Millisecond)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
				t.Logf("kill %d after %d trades produced; stderr %s", i+1, produced(srv), stderr.String())
				time.Sleep(time.Duration(r.IntN(800)) * time.Millisecond) // down a moment: trades are missed
			}
			// The last run catches up, the feed stops, klines close, a clean stop.
			// It serves the API: REST klines come from the store.
			cmd, stdout, stderr := klaggCommand(context.Background(), append(args[:len(args):len(args)], "--listen", "127.0.0.1:0")...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			stopAt := srv.Clock()
			srv.Stop()
			time.Sleep(5 * time.Second)
			served := restKlines(t, stdout.String(), ivs)
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			select {
			case err := <-waited:
				if err != nil {
					t.Fatalf("the last run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump on stderr
				<-waited
				t.Fatalf("the last run did not stop within 30 s of SIGINT\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
			t.Logf("last run:\n%s", stdout)

			want := replayProduced(t, srv, ivs)
			got, first := readStore(t, db, "futures", ivs)
			// fakex trades from its start, the daemon from its first start a
			// moment later: a series begins with its first stored kline
			// (partial), the replay's klines before it were never the daemon's.
			checked, missing, partial, due := 0, 0, 0, 0
			keys := make([]string, 0, len(want))
			for k := range want {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, key := range keys {
				w := want[key]
				g, ok := got[key]
				if f, ok := first[key[:strings.LastIndexByte(key, ' ')]]; ok && w.OpenTime < f {
					continue
				}
				if w.CloseTime < stopAt-4000 {
					due++
				}
				switch {
				case !ok && w.CloseTime < stopAt-4000:
					missing++
					if missing < 5 {
						t.Errorf("kline %s closed before the feed stopped but not in the database", key)
					}
				case !ok:
				case g.Flags&shard.FlagPartial != 0:
					partial++ // the first start's first klines: trades before it are missing
				case !sameKline(g, w):
					t.Errorf("kline %s differs:\n stored %+v\n want   %+v", key, g, w)
				default:
					checked++
				}
			}
			// Only the first start's first kline of each (symbol, interval) is
			// partial: a restart resumes exactly. Every kline due is stored
			// and, unless partial, equal.
			if missing > 0 || checked == 0 || checked+partial < due || partial > fcfg.Symbols*3 {
				t.Fatalf("%d klines due: %d missing, %d partial, %d equal", due, missing, partial, checked)
			}
			for key, g := range got {
				if _, ok := want[key]; !ok && g.Flags&shard.FlagEmpty == 0 {
					t.Errorf("stored kline %s with trades no replay has", key)
				}
			}
			// The API answered with every stored kline, those of the runs
			// before the last included, as Binance's REST would.
			servedEqual := 0
			for key, g := range got {
				row, ok := served[key]
				switch {
				case g.CloseTime >= stopAt-4000: // may have closed only at the stop
				case !ok:
					t.Errorf("stored kline %s not served by REST klines", key)
				case g.Flags&shard.FlagPartial != 0:
				case string(row) != string(api.AppendRESTKline(nil, new(want[key]))):
					t.Errorf("REST kline %s is %s, want %s", key, row, api.AppendRESTKline(nil, new(want[key])))
				default:
					servedEqual++
				}
			}
			if servedEqual == 0 {
				t.Errorf("REST served no kline equal to the replay")
			}
			t.Logf("%d kills; %d stored klines equal to the uninterrupted replay, %d partial; %d served by REST", kills, checked, partial, servedEqual)
			if t.Failed() {
				t.Logf("the last run's stderr:\n%s", stderr)
			}
		})
	}
}

// restKlines reads every symbol's klines of intervals from the REST API of the
// daemon whose stdout is given, keyed as replayProduced, each the raw JSON row.
func restKlines(t *testing.T, stdout, intervals string) map[string]json.RawMessage {
	t.Helper()
	_, rest, ok := strings.Cut(stdout, "serving     http://")
	addr, _, _ := strings.Cut(rest, "/")
	if !ok || addr == "" {
		t.Fatalf("the daemon did not say where it serves:\n%s", stdout)
	}
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s %v", path, resp.StatusCode, body, err)
		}
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	var info struct{ Symbols []struct{ Symbol string } }
	get("/fapi/v1/exchangeInfo", &info)
	out := map[string]json.RawMessage{}
	for _, sym := range info.Symbols {
		for _, iv := range strings.Split(intervals, ",") {
			var rows []json.RawMessage
			get("/fapi/v1/klines?symbol="+sym.Symbol+"&interval="+iv+"&startTime=0&limit=1500", &rows)
			for _, row := range rows {
				var fields []json.RawMessage
				if err := json.Unmarshal(row, &fields); err != nil || len(fields) != 12 {
					t.Fatalf("REST kline %s: want 12 fields (%v)", row, err)
				}
				out[fmt.Sprintf("%s %s %s", sym.Symbol, iv, fields[0])] = row
			}
		}
	}
	return out
}

// TestRestartLongDown stops the daemon for longer than --resume-within: the
// restart does not fetch every missed trade, each symbol starts afresh (its
// first klines partial), and the klines of the periods it missed come from
// REST klines, flagged rest and equal, in everything Binance publishes, to a
// replay of every trade fakex produced.
func TestRestartLongDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon twice with a pause between")
	}
	const ivs = "1s,1m"
	fcfg := fakex.DefaultConfig()
	fcfg.Market, fcfg.Symbols, fcfg.Rate, fcfg.History = "spot", 6, 200, 1<<20
	srv := startFakex(t, fcfg)
	db := filepath.Join(t.TempDir(), "k.db")
	args := []string{"run", "--market", "spot", "--ws-url", srv.WSURL(), "--rest-url", srv.RESTURL(), "--db", db,
		"--listen", "", "--intervals", ivs, "--log-level", "info", "--backfill", "1", "--resume-within", "1s"}
	run := func(d time.Duration) string {
		cmd, stdout, stderr := klaggCommand(context.Background(), args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("klagg run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		return stderr.String()
	}
	run(3 * time.Second)
	_, first1 := readStore(t, db, "spot", ivs)
	time.Sleep(4 * time.Second) // down: over --resume-within
	// The first scan plans the holes 3 s after the start; the pages follow.
	log2 := run(8 * time.Second)
	if !strings.Contains(log2, "start afresh") {
		t.Errorf("the restart resumed symbols down for 4 s with --resume-within 1s:\n%s", log2)
	}
	stopAt := srv.Clock()
	srv.Stop()

	want := replayProduced(t, srv, ivs)
	got, _ := readStore(t, db, "spot", ivs)
	// The second run's first 1s kline of each symbol: after the hole.
	second := map[string]int64{}
	for key, k := range got {
		series := key[:strings.LastIndexByte(key, ' ')]
		if strings.HasSuffix(series, " 1s") && k.Flags&shard.FlagREST == 0 && k.OpenTime > first1[series]+3000 {
			if f, ok := second[series]; !ok || k.OpenTime < f {
				second[series] = k.OpenTime
			}
		}
	}
	rest, partial := 0, 0
	for series, start := range second {
		// The second run's first kline: partial when it opened before the
		// stream surely delivered, else whole.
		key := fmt.Sprintf("%s %d", series, start)
		switch k := got[key]; {
		case k.Flags&shard.FlagPartial != 0:
			partial++
		case !sameKline(k, want[key]):
			t.Errorf("kline %s, the second run's first, is neither partial nor the replay's:\n stored %+v\n want   %+v", key, k, want[key])
		}
		// Every period from the first run's last kline to the second run's first
		// is stored, from REST, equal to the replay.
		var newest int64
		for key, k := range got {
			if strings.HasPrefix(key, series+" ") && k.Flags&shard.FlagREST == 0 && k.OpenTime < start && k.OpenTime > newest {
				newest = k.OpenTime
			}
		}
		if newest == 0 || start-newest < 3000 {
			t.Fatalf("%s: no hole between the runs (last %d, first %d): the test did not stop the daemon long enough", series, newest, start)
		}
		for open := newest + 1000; open < start; open += 1000 {
			key := fmt.Sprintf("%s %d", series, open)
			g, ok := got[key]
			w, traded := want[key]
			switch {
			case !ok:
				t.Errorf("kline %s missed while down is not in the database", key)
			case g.Flags&shard.FlagREST == 0:
				t.Errorf("kline %s missed while down is not flagged rest: %v", key, g.Flags)
			case !traded && g.Count != 0:
				t.Errorf("kline %s has %d trades, the replay none", key, g.Count)
			case traded && !sameBinanceFields(g, w):
				t.Errorf("kline %s from REST differs:\n stored %+v\n want   %+v", key, g, w)
			default:
				rest++
			}
		}
	}
	if len(second) != fcfg.Symbols || rest == 0 {
		t.Errorf("%d symbols restarted, %d klines from REST; want %d, > 0", len(second), rest, fcfg.Symbols)
	}
	t.Logf("%d klines missed while down filled from REST, equal to the replay; %d of %d first klines after the restart partial; fakex stopped at %d",
		rest, partial, len(second), stopAt)
}

// sameBinanceFields compares what Binance's REST klines publish.
func sameBinanceFields(a, b shard.Kline) bool {
	return a.OpenTime == b.OpenTime && a.CloseTime == b.CloseTime && a.Open == b.Open && a.High == b.High &&
		a.Low == b.Low && a.Close == b.Close && a.Volume == b.Volume && a.QuoteVolume == b.QuoteVolume &&
		a.Count == b.Count && a.TakerBuyVolume == b.TakerBuyVolume && a.TakerBuyQuoteVolume == b.TakerBuyQuoteVolume
}

func produced(srv *fakex.Server) (n int64) {
	for _, r := range srv.Produced() {
		n += r.Count
	}
	return n
}

// sameKline compares everything Binance publishes, and the ids; flags only in
// what they say of quality (a first start's partial klines are expected).
func sameKline(a, b shard.Kline) bool {
	if a.Flags&(shard.FlagGap|shard.FlagLate|shard.FlagOverflow) != 0 {
		return false
	}
	a.Flags, b.Flags, a.Symbol, b.Symbol, a.Interval, b.Interval = 0, 0, 0, 0, 0, 0
	return a == b
}

// replayProduced replays every trade fakex produced through a plain pipeline:
// the klines of a daemon that never stopped, keyed "SYMBOL interval open".
func replayProduced(t *testing.T, srv *fakex.Server, intervals string) map[string]shard.Kline {
	t.Helper()
	var frames [][]byte
	type rec struct {
		name string
		t    fakex.AggTrade
	}
	var all []rec
	for name, r := range srv.Produced() {
		for from := r.First; ; {
			page := srv.Trades(name, from, 1000)
			for _, tr := range page {
				all = append(all, rec{name, tr})
			}
			if len(page) < 1000 {
				break
			}
			from = page[len(page)-1].AggID + 1
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].t.TradeTime != all[j].t.TradeTime {
			return all[i].t.TradeTime < all[j].t.TradeTime
		}
		if all[i].name != all[j].name {
			return all[i].name < all[j].name
		}
		return all[i].t.AggID < all[j].t.AggID
	})
	for _, r := range all {
		frames = append(frames, fmt.Appendf(nil, `{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%t}`,
			r.t.TradeTime, r.t.AggID, r.name, r.t.Price, r.t.Qty, r.t.FirstID, r.t.LastID, r.t.TradeTime, r.t.BuyerMaker))
	}
	cfg := pipeline.DefaultConfig()
	ivs, err := shard.ParseIntervals(intervals)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shard.Intervals, cfg.LearnSymbols, cfg.FlushOpen = ivs, true, true
	table := parse.NewSymbolTable()
	col := &keyed{table: table, ivs: ivs, out: map[string]shard.Kline{}}
	p, err := pipeline.New(cfg, table, []pipeline.Source{&pipeline.Frames{Frames: frames}}, col, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return col.out
}

// keyed is a sink keeping closed klines by "SYMBOL interval open".
type keyed struct {
	table *parse.SymbolTable
	ivs   []shard.Interval
	out   map[string]shard.Kline
}

func (k *keyed) Kline(kl *shard.Kline) error {
	if kl.Closed && !kl.Mark {
		k.out[fmt.Sprintf("%s %s %d", k.table.Load().Name(kl.Symbol), k.ivs[kl.Interval].Name, kl.OpenTime)] = *kl
	}
	return nil
}
func (k *keyed) Close() error { return nil }

// readStore returns the closed klines of the database, keyed as replayProduced,
// and the open time of each series' first kline, open or closed, keyed
// "SYMBOL interval".
func readStore(t *testing.T, path, market, intervals string) (closed map[string]shard.Kline, first map[string]int64) {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Path = path
	db, err := store.OpenReadOnly(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	symbols, err := db.Symbols(ctx, market)
	if err != nil {
		t.Fatal(err)
	}
	ivs, _ := shard.ParseIntervals(intervals)
	closed, first = map[string]shard.Kline{}, map[string]int64{}
	for _, sym := range symbols {
		for _, iv := range ivs {
			ks, err := db.Klines(ctx, market, sym, iv.Name, -1, -1, 100_000)
			if err != nil {
				t.Fatal(err)
			}
			if len(ks) > 0 {
				first[sym+" "+iv.Name] = ks[0].OpenTime
			}
			for _, k := range ks {
				if k.Closed {
					closed[fmt.Sprintf("%s %s %d", sym, iv.Name, k.OpenTime)] = k
				}
			}
		}
	}
	return closed, first
}
