package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// rat parses a decimal as printed by Binance or by klagg, exactly.
func rat(t testing.TB, s string) *big.Rat {
	t.Helper()
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("not a number: %q", s)
	}
	return r
}

// TestReplayXRPETH replays 12,477 real spot aggTrades from CSV and checks every
// complete kline of Binance's own 1m and 5m files, empty minutes included.
func TestReplayXRPETH(t *testing.T) {
	trades := dataFile(t, "XRPETH-aggTrades-2019-10-11.csv")
	// The CSV reader takes the symbol from a data.binance.vision file name; the shared
	// file has one, so it is replayed as it is.
	cfg := testConfig(t, "1m,5m")
	table := parse.NewSymbolTable()
	got, st := run(t, cfg, table, &Replay{Paths: []string{trades}})
	if st.Shard.Trades != 12477 || st.Errors() != 0 || st.Shard.Duplicates != 0 {
		t.Fatalf("trades %d errors %d duplicates %d, want 12477, 0, 0", st.Shard.Trades, st.Errors(), st.Shard.Duplicates)
	}
	for _, iv := range []string{"1m", "5m"} {
		f, err := os.Open(dataFile(t, "XRPETH-"+iv+"-ohlcv.csv"))
		if err != nil {
			t.Fatal(err)
		}
		var rows [][]string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "open_time") {
				rows = append(rows, strings.Split(sc.Text(), ","))
			}
		}
		f.Close()
		// Binance's last kline was still open when the file was downloaded.
		complete := rows[:len(rows)-1]
		empty := 0
		for _, row := range complete {
			open, _ := strconv.ParseInt(row[0], 10, 64)
			k, ok := got.klines[klineKey{"XRPETH", iv, open}]
			if !ok {
				t.Fatalf("%s kline %d missing", iv, open)
			}
			if k.Flags&shard.FlagEmpty != 0 {
				empty++
			}
			ours := []string{k.Open.String(), k.High.String(), k.Low.String(), k.Close.String(), string(k.Volume.AppendDecimal(nil, parse.Scale))}
			for i, name := range []string{"open", "high", "low", "close", "volume"} {
				if rat(t, ours[i]).Cmp(rat(t, row[1+i])) != 0 {
					t.Fatalf("%s kline %d %s = %s, Binance %s", iv, open, name, ours[i], row[1+i])
				}
			}
		}
		if n := len(got.order[[2]string{"XRPETH", iv}]); n != len(complete) {
			t.Errorf("%s: %d klines closed, Binance has %d complete ones", iv, n, len(complete))
		}
		t.Logf("%s: %d klines equal Binance's, %d of them empty", iv, len(complete), empty)
		if iv == "1m" && empty != 1091 {
			t.Errorf("1m empty klines = %d, want the 1,091 Binance emitted", empty)
		}
	}
}

// recordedKline is Binance's running kline as a kline_1m stream sends it.
type recordedKline struct {
	Data struct {
		S string `json:"s"`
		K struct {
			T0 int64  `json:"t"`
			T1 int64  `json:"T"`
			I  string `json:"i"`
			F  int64  `json:"f"`
			L  int64  `json:"L"`
			O  string `json:"o"`
			C  string `json:"c"`
			H  string `json:"h"`
			Lo string `json:"l"`
			V  string `json:"v"`
			N  int64  `json:"n"`
			Q  string `json:"q"`
			VB string `json:"V"`
			QB string `json:"Q"`
		} `json:"k"`
	} `json:"data"`
}

// lastUpdate is a shard.Emitter that keeps the newest running kline per symbol for
// the first interval.
type lastUpdate map[uint32]shard.Kline

func (l lastUpdate) Closed(*shard.Kline)         {}
func (l lastUpdate) Dropped(*parse.Trade, error) {}
func (l lastUpdate) Update(k *shard.Kline) bool {
	if k.Interval == 0 {
		l[k.Symbol] = *k
	}
	return true
}

// TestRecordedKlines replays real WebSocket recordings frame by frame and, wherever a
// recorded kline_1m frame's trade-id range [f, L] is fully covered by the recorded
// aggTrades, checks every field of Binance's kline against klagg's.
func TestRecordedKlines(t *testing.T) {
	for _, name := range []string{"futures-ws-2021-07-22.ndjson", "spot-ws-2021-08-14.ndjson", "spot-ws-2021-10-12.ndjson"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(dataFile(t, name))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
			table := parse.NewSymbolTable()
			for _, line := range lines {
				var env struct {
					Data struct {
						S string `json:"s"`
					} `json:"data"`
				}
				if json.Unmarshal(line, &env) == nil && env.Data.S != "" {
					table.Add(env.Data.S)
				}
			}
			dec := parse.NewDecoder(parse.DefaultConfig(), table)
			ivs, _ := shard.ParseIntervals("1m")
			cfg := shard.DefaultConfig()
			cfg.Intervals = ivs
			out := lastUpdate{}
			agg, err := shard.New(cfg, out)
			if err != nil {
				t.Fatal(err)
			}
			// Binance's kline and aggTrade streams interleave loosely, so every recorded
			// kline is kept by (symbol, open time, last trade id) and compared with
			// klagg's running kline whenever that reaches the same last trade id.
			type at struct {
				symbol   uint32
				openTime int64
				last     int64
			}
			recorded := map[at][]recordedKline{}
			for _, line := range lines {
				if !bytes.Contains(line, []byte("@kline_1m")) {
					continue
				}
				var rk recordedKline
				if err := json.Unmarshal(line, &rk); err != nil {
					t.Fatal(err)
				}
				sym, _ := table.Load().Lookup([]byte(rk.Data.S))
				key := at{sym, rk.Data.K.T0, rk.Data.K.L}
				recorded[key] = append(recorded[key], rk)
			}
			checked, klineFrames := 0, 0
			for _, line := range lines {
				var tr parse.Trade
				kind, err := dec.Decode(&tr, line)
				if err != nil {
					t.Fatalf("cannot decode %s: %v", line, err)
				}
				if kind == parse.KindKline {
					klineFrames++
				}
				if kind != parse.KindAggTrade {
					continue
				}
				agg.Apply(&tr)
				agg.FlushUpdates(true)
				k := out[tr.Symbol]
				for _, rk := range recorded[at{tr.Symbol, k.OpenTime, k.LastTradeID}] {
					bk := rk.Data.K
					if bk.F != k.FirstTradeID {
						continue // the recording started after this kline's first trade
					}
					checked++
					eq := func(field, ours, theirs string) {
						t.Helper()
						if rat(t, ours).Cmp(rat(t, theirs)) != 0 {
							t.Errorf("%s kline %d at L=%d: %s = %s, Binance %s", rk.Data.S, bk.T0, bk.L, field, ours, theirs)
						}
					}
					eq("open", k.Open.String(), bk.O)
					eq("high", k.High.String(), bk.H)
					eq("low", k.Low.String(), bk.Lo)
					eq("close", k.Close.String(), bk.C)
					eq("volume", string(k.Volume.AppendDecimal(nil, parse.Scale)), bk.V)
					eq("quote volume", string(k.QuoteVolume.AppendDecimal(nil, 2*parse.Scale)), bk.Q)
					eq("taker buy volume", string(k.TakerBuyVolume.AppendDecimal(nil, parse.Scale)), bk.VB)
					eq("taker buy quote volume", string(k.TakerBuyQuoteVolume.AppendDecimal(nil, 2*parse.Scale)), bk.QB)
					if k.Count != bk.N || k.CloseTime != bk.T1 {
						t.Errorf("%s kline %d: count %d close %d, Binance %d %d", rk.Data.S, bk.T0, k.Count, k.CloseTime, bk.N, bk.T1)
					}
				}
			}
			skipped := klineFrames - checked
			t.Logf("%d recorded klines checked field by field, %d not fully covered by the recording", checked, skipped)
			if checked == 0 {
				t.Fatal("no recorded kline was covered by recorded aggTrades")
			}
		})
	}
}

// TestReplayRecordings replays the mixed-stream recordings through the pipeline: the
// aggTrades are picked out, everything else is skipped by kind, nothing is an error.
func TestReplayRecordings(t *testing.T) {
	for _, name := range []string{"futures-ws-2021-07-22.ndjson", "spot-ws-2021-08-14.ndjson", "spot-ws-2021-10-12.ndjson"} {
		t.Run(name, func(t *testing.T) {
			path := dataFile(t, name)
			data, _ := os.ReadFile(path)
			want := uint64(bytes.Count(data, []byte("@aggTrade")))
			cfg := testConfig(t, "1m,5m")
			cfg.LearnSymbols = true
			cfg.FlushOpen = true // some recordings are shorter than a minute
			got, st := run(t, cfg, parse.NewSymbolTable(), &Replay{Paths: []string{path}})
			if st.Errors() != 0 {
				t.Fatalf("errors: %+v", st.Parse.Errors)
			}
			if st.Parse.Frames[parse.KindAggTrade] != want || st.Shard.Trades != want {
				t.Fatalf("aggTrades decoded %d applied %d, recording has %d", st.Parse.Frames[parse.KindAggTrade], st.Shard.Trades, want)
			}
			other := st.Sources.Frames - want
			var skipped uint64
			for k := parse.Kind(0); k < parse.NumKinds; k++ {
				if k != parse.KindAggTrade {
					skipped += st.Parse.Frames[k]
				}
			}
			if skipped != other || st.Parse.Frames[parse.KindKline] == 0 || st.Parse.Frames[parse.KindDepth] == 0 {
				t.Fatalf("skipped %d of %d other frames: %+v", skipped, other, st.Parse.Frames)
			}
			if len(got.klines) == 0 {
				t.Fatal("no kline written")
			}
		})
	}
}

// TestReplaySeveralSymbols replays one CSV per symbol for the same day, as
// data.binance.vision serves them: each symbol's klines equal those of its file
// replayed alone, though every file covers the same hours.
func TestReplaySeveralSymbols(t *testing.T) {
	data, err := os.ReadFile(dataFile(t, "XRPETH-aggTrades-2019-10-11.csv"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, sym := range []string{"AAAETH", "BBBETH", "CCCETH"} {
		path := filepath.Join(dir, sym+"-aggTrades-2019-10-11.csv")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	alone, _ := run(t, testConfig(t, "1m,5m,1h"), parse.NewSymbolTable(), &Replay{Paths: paths[:1]})
	sources, err := ReplaySources(paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) != 3 {
		t.Fatalf("%d sources for 3 symbols", len(sources))
	}
	got, st := run(t, testConfig(t, "1m,5m,1h"), parse.NewSymbolTable(), sources...)
	if st.Shard.TooLate != 0 || st.Shard.Late != 0 || st.Shard.Trades != 3*12477 {
		t.Fatalf("late %d too late %d trades %d", st.Shard.Late, st.Shard.TooLate, st.Shard.Trades)
	}
	for key, k := range alone.klines {
		for _, sym := range []string{"BBBETH", "CCCETH"} {
			other := got.klines[klineKey{sym, key.interval, key.openTime}]
			k.Symbol, other.Symbol = 0, 0
			if k != other {
				t.Fatalf("%s %s %d differs from the file replayed alone", sym, key.interval, key.openTime)
			}
		}
	}
}
