package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

var ctx = context.Background()

func testIntervals(t testing.TB, list string) []shard.Interval {
	t.Helper()
	ivs, err := shard.ParseIntervals(list)
	if err != nil {
		t.Fatal(err)
	}
	return ivs
}

// testConfig returns a config for a database in a new temporary directory; commits
// happen on Sync and Close only, unless a test sets CommitEvery.
func testConfig(t testing.TB) store.Config {
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "klagg.db")
	cfg.CommitEvery = time.Hour
	return cfg
}

type harness struct {
	t       testing.TB
	cfg     store.Config
	db      *store.DB
	w       *store.Writer
	symbols *parse.SymbolTable
	ivs     []shard.Interval
}

func openHarness(t testing.TB, cfg store.Config, symbols *parse.SymbolTable, ivs []shard.Interval, log *zap.Logger) *harness {
	t.Helper()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	w, err := store.NewWriter(ctx, db, symbols, ivs, log)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, db: db, w: w, symbols: symbols, ivs: ivs}
	t.Cleanup(func() { h.close() })
	return h
}

func (h *harness) close() {
	if h.w != nil {
		h.w.Close()
		h.w = nil
	}
	if h.db != nil {
		h.db.Close()
		h.db = nil
	}
}

func (h *harness) put(ks ...shard.Kline) {
	h.t.Helper()
	for i := range ks {
		if err := h.w.Kline(&ks[i]); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) sync() {
	h.t.Helper()
	if err := h.w.Sync(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) klines(symbol, iv string, start, end int64, limit int) []shard.Kline {
	h.t.Helper()
	ks, err := h.db.Klines(ctx, h.cfg.Market, symbol, iv, start, end, limit)
	if err != nil {
		h.t.Fatal(err)
	}
	return ks
}

// kl builds a kline of symbol index sym, interval index iv (of ivs), opening at
// open, with trades aggIDs [first, last] (none when last < first).
func kl(ivs []shard.Interval, sym uint32, iv uint8, open int64, first, last int64, closed bool) shard.Kline {
	k := shard.Kline{
		Symbol: sym, Interval: iv, Closed: closed, OpenTime: open, CloseTime: ivs[iv].CloseTime(open),
		FirstTradeID: -1, LastTradeID: -1, FirstAggID: -1, LastAggID: -1,
	}
	if last >= first {
		n := last - first + 1
		k.Open = parse.Decimal(6_000_012_345_678 + uint64(first))
		k.High = k.Open + 99_000_000
		k.Low = k.Open - 1
		k.Close = k.Open + 12_300_000
		k.Volume = shard.Uint128{Lo: uint64(n) * 1_630_000}
		k.TakerBuyVolume = shard.Uint128{Lo: uint64(n) * 1_000}
		k.QuoteVolume = shard.Mul64(uint64(n)*1_630_000, uint64(k.Open))
		k.TakerBuyQuoteVolume = shard.Mul64(uint64(n)*1_000, uint64(k.Open))
		k.Count = 3 * n
		k.FirstTradeID, k.LastTradeID = 10*first, 10*last+2
		k.FirstAggID, k.LastAggID = first, last
	} else {
		k.Flags = shard.FlagEmpty
		k.Open, k.High, k.Low, k.Close = 5_000_000_000, 5_000_000_000, 5_000_000_000, 5_000_000_000
	}
	return k
}

// same reports whether a stored kline equals the one written, but for the Symbol and
// Interval fields that reads leave zero.
func same(a, b shard.Kline) bool {
	a.Symbol, a.Interval, b.Symbol, b.Interval = 0, 0, 0, 0
	return a == b
}
