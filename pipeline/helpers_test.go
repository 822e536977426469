package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// dataDir is the shared real Binance data, relative to this package.
var dataDir = filepath.Join("..", "..", "shared", "data", "binance")

// dataFile returns the path of a shared data file, or skips the test when the folder
// is absent (a clone without ../shared).
func dataFile(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(dataDir, name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real Binance data not available (%v): this test needs ../shared/data/binance next to the project", err)
	}
	return path
}

// klineKey names one kline.
type klineKey struct {
	symbol   string
	interval string
	openTime int64
}

// collector is a Sink that keeps the final state of every closed kline (a correction
// replaces the kline it corrects) and counts what it saw.
type collector struct {
	mu        sync.Mutex
	symbols   *parse.SymbolTable
	intervals []shard.Interval
	klines    map[klineKey]shard.Kline
	order     map[[2]string][]int64 // open times per (symbol, interval) as closed
	updates   int
	closed    bool
}

func newCollector(symbols *parse.SymbolTable, intervals []shard.Interval) *collector {
	return &collector{symbols: symbols, intervals: intervals, klines: map[klineKey]shard.Kline{}, order: map[[2]string][]int64{}}
}

func (c *collector) Kline(k *shard.Kline) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !k.Closed {
		c.updates++
		return nil
	}
	name, iv := c.symbols.Load().Name(k.Symbol), c.intervals[k.Interval].Name
	key := klineKey{name, iv, k.OpenTime}
	if _, seen := c.klines[key]; !seen {
		c.order[[2]string{name, iv}] = append(c.order[[2]string{name, iv}], k.OpenTime)
	}
	c.klines[key] = *k
	return nil
}

func (c *collector) Close() error {
	c.closed = true
	return nil
}

// run runs a pipeline over sources into a collector.
func run(t testing.TB, cfg Config, table *parse.SymbolTable, sources ...Source) (*collector, *Stats) {
	t.Helper()
	c := newCollector(table, cfg.Shard.Intervals)
	p, err := New(cfg, table, sources, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !c.closed {
		t.Fatal("sink was not closed")
	}
	return c, p.Stats()
}

// testConfig is DefaultConfig with the given intervals and small rings, so that
// wrap-around and backpressure happen in tests.
func testConfig(t testing.TB, intervals string) Config {
	t.Helper()
	cfg := DefaultConfig()
	ivs, err := shard.ParseIntervals(intervals)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shard.Intervals = ivs
	cfg.Ring.Size = 64
	cfg.Batch = 16
	cfg.Idle = 0
	return cfg
}

func (k klineKey) String() string { return fmt.Sprintf("%s %s %d", k.symbol, k.interval, k.openTime) }
