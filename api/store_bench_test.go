package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// BenchmarkRESTKlinesHistory answers issue 8's second question: REST klines'
// requests/s and p99 at limit=1500 when History is the daemon's SQLite store,
// beside the same requests served from MemHistory in the same run. Both hold
// the same klines: 100 symbols x 20,000 1m klines (2 million), the store
// filled by its bulk loader (store.Config.Bulk: the layout a replay leaves,
// which compaction also gives the daemon's older hours; the current hour's,
// one kline per commit, reads about 4 times slower: bench/store-results.md)
// and read as the daemon reads it: api.HistoryFunc over db.Klines, no memory
// map (the default). Each request asks for another symbol in turn;
// query=newest is the newest 1500 (no startTime, what a chart asks first),
// query=range 1500 from a startTime spread over the series (a client paging
// through history). 4 keep-alive clients over loopback, in this process.
//
//	go test -run '^$' -bench 'RESTKlinesHistory' -benchtime 3s -count 1 ./api/
func BenchmarkRESTKlinesHistory(b *testing.B) {
	const symbols, perSymbol = 100, 20_000
	ctx := context.Background()
	ivs := testIntervals(b) // 1m is index 0
	names := make([]string, symbols)
	for i := range names {
		names[i] = fmt.Sprintf("S%03dUSDT", i)
	}
	table := parse.NewSymbolTable(names...)
	base := ivs[0].OpenTime(t0)

	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(b.TempDir(), "klagg.db")
	cfg.Market = "futures"
	cfg.Bulk = true
	db, err := store.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	w, err := store.NewWriter(ctx, db, table, ivs, nil)
	if err != nil {
		b.Fatal(err)
	}
	hist := NewMemHistory()
	series := make([][]shard.Kline, symbols)
	for i := range series {
		series[i] = make([]shard.Kline, 0, perSymbol)
	}
	// Time-major, as a replay writes them.
	for m := range int64(perSymbol) {
		for s := range symbols {
			k := storeBenchKline(uint32(s), base+m*minute, m)
			if err := w.Kline(&k); err != nil {
				b.Fatal(err)
			}
			series[s] = append(series[s], k)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	for s, ks := range series {
		hist.Add(names[s], "1m", ks...)
	}
	sqlite := HistoryFunc(func(ctx context.Context, sym, iv string, start, end int64, limit int) ([]shard.Kline, error) {
		return db.Klines(ctx, "futures", sym, iv, start, end, limit)
	})

	for _, h := range []struct {
		name string
		h    History
	}{{"sqlite", sqlite}, {"mem", hist}} {
		for _, query := range []string{"newest", "range"} {
			b.Run(fmt.Sprintf("history=%s/limit=1500/query=%s", h.name, query), func(b *testing.B) {
				s, _ := testServer(b, "futures", func(c *Config) {
					c.Symbols, c.Intervals, c.History = table, ivs, h.h
				})
				var urls []string
				var first []int64 // open time of each URL's first row
				for i := range 1000 {
					sym := i % symbols
					q := fmt.Sprintf("/fapi/v1/klines?symbol=%s&interval=1m&limit=1500", names[sym])
					firstOpen := series[sym][perSymbol-1500].OpenTime
					if query == "range" {
						m := int64(i*7919) % (perSymbol - 1500)
						firstOpen = base + m*minute
						q += fmt.Sprintf("&startTime=%d", firstOpen)
					}
					urls = append(urls, s.httpURL(q))
					first = append(first, firstOpen)
				}
				// The answer is the stored klines, row for row.
				for i := range 3 {
					code, body := get(b, urls[i])
					rows := decodeRows(b, body)
					if code != 200 || len(rows) != 1500 {
						b.Fatalf("%s: status %d, %d rows, want 1500", urls[i], code, len(rows))
					}
					ks := series[i%symbols]
					m := (first[i] - base) / minute
					for j, r := range rows {
						if want := rowOf(&ks[m+int64(j)]); r != want {
							b.Fatalf("%s row %d: got %+v, want %+v", urls[i], j, r, want)
						}
					}
				}
				benchRESTParallel(b, urls)
			})
		}
	}
}

// storeBenchKline is a futures-like closed 1m kline: a BTC-like price with
// one decimal, volumes with three, the quote volume their exact product (so
// the store keeps every decimal as an INTEGER, as it does most futures').
func storeBenchKline(sym uint32, open, seq int64) shard.Kline {
	x := uint64(seq)*7919 + uint64(sym)*104729
	px := uint64(60_000_00000000) + x%100_000*10_000_000 // 0.1 ticks
	vol := uint64(1_000)*100_000 + x%1_000_000*100_000   // 0.001 steps
	return shard.Kline{
		Symbol: sym, Closed: true, OpenTime: open, CloseTime: open + minute - 1,
		Open: parse.Decimal(px), High: parse.Decimal(px + 150_00000000), Low: parse.Decimal(px - 120_00000000),
		Close:  parse.Decimal(px + 30_00000000),
		Volume: shard.Uint128{Lo: vol}, TakerBuyVolume: shard.Uint128{Lo: vol / 2},
		QuoteVolume: shard.Mul64(px, vol), TakerBuyQuoteVolume: shard.Mul64(px, vol/2),
		Count: 500 + int64(x%1000), FirstTradeID: int64(x), LastTradeID: int64(x) + 499 + int64(x%1000),
		FirstAggID: int64(x) / 3, LastAggID: int64(x)/3 + 200,
	}
}

// benchRESTParallel GETs urls in turn from 2 x GOMAXPROCS keep-alive clients
// and reports requests/s, p50 and p99, bytes per answer and the process's
// CPU time per request (server and clients: steadier than the wall-clock
// figures on a shared machine).
func benchRESTParallel(b *testing.B, urls []string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var lat []time.Duration
	var bytesRead, next atomic.Int64
	b.SetParallelism(2)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			url := urls[int(next.Add(1))%len(urls)]
			t := time.Now()
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n < 1500*100 {
				b.Errorf("%s: status %d, %d bytes", url, resp.StatusCode, n)
				return
			}
			bytesRead.Add(n)
			mine = append(mine, time.Since(t))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
		b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-us/req")
		b.SetBytes(bytesRead.Load() / int64(len(lat)))
	}
}
