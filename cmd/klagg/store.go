package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/feed"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// storeFlags are the flags of the embedded kline database.
type storeFlags struct {
	path      string
	retention string
}

func (f *storeFlags) register(fs *flag.FlagSet, def string) {
	fs.StringVar(&f.path, "db", def, "SQLite file keeping every kline (created on first start; empty: none)")
	fs.StringVar(&f.retention, "retention", "", "how long closed klines of an interval are kept, e.g. 1s=24h,1m=720h (default: forever)")
}

// config checks the flags (before anything is opened) and returns the store's
// configuration, or ok false when there is no store.
func (f *storeFlags) config(market string, intervals []shard.Interval) (cfg store.Config, ok bool, err error) {
	if f.path == "" {
		if f.retention != "" {
			return cfg, false, usageErrorf("--retention needs a --db")
		}
		return cfg, false, nil
	}
	cfg = store.DefaultConfig()
	cfg.Path, cfg.Market = f.path, market
	if f.retention == "" {
		return cfg, true, nil
	}
	cfg.Retention = map[string]time.Duration{}
	for _, item := range splitTrimmed(f.retention) {
		name, dur, found := strings.Cut(item, "=")
		d, derr := time.ParseDuration(strings.TrimSpace(dur))
		if !found || derr != nil || d <= 0 {
			return cfg, false, usageErrorf("--retention %q: want INTERVAL=DURATION items such as 1s=24h", item)
		}
		name = strings.TrimSpace(name)
		if !slices.ContainsFunc(intervals, func(iv shard.Interval) bool { return iv.Name == name }) {
			return cfg, false, usageErrorf("--retention %q: %s is not one of the intervals computed", item, name)
		}
		cfg.Retention[name] = d
	}
	return cfg, true, nil
}

// openStore opens the database, saying clearly what is wrong with a file it
// will not touch.
func openStore(ctx context.Context, cfg store.Config) (*store.DB, error) {
	db, err := store.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot open the kline database %s (nothing was changed): %w", cfg.Path, err)
	}
	return db, nil
}

// resumePlan is what a restart takes from the store: per symbol, where its
// trades resume, and the klines to give back to its shard.
type resumePlan struct {
	resume map[string]feed.Resume
	saved  map[string][]shard.Saved
}

// planResume turns the stored series into the feed's resume points and the
// shards' saved state. A symbol resumes after its base interval's Through
// (the interval trades update; every other is folded from it). Each longer
// interval also needs its child's closed klines from its own first period not
// closed, to rebuild its open period: those older than closedSince are read
// here. A symbol whose state the shard would refuse is left out, so the feed
// does not resume it either: it starts afresh, its first klines partial. So is
// one whose last stored trade's base kline opened before since: fetching every
// trade it missed would cost more REST weight than the klines of the periods
// it missed (the backfill fetches those; fillHoles).
func planResume(ctx context.Context, db *store.DB, market string, series []store.Series, scfg shard.Config, since int64, log *zap.Logger) (resumePlan, error) {
	plan := resumePlan{resume: map[string]feed.Resume{}, saved: map[string][]shard.Saved{}}
	ivs := scfg.Intervals
	base, ok := shard.Base(ivs)
	if !ok {
		log.Warn("no configured interval is the one the others are folded from: klines are not resumed after a restart (first klines partial); add it to --intervals",
			zap.Int("intervals", len(ivs)))
		return plan, nil
	}
	child := shard.Child(ivs)
	index := map[string]int{}
	for i, iv := range ivs {
		index[iv.Name] = i
	}
	bySym := map[string][]*store.Series{}
	for j := range series {
		s := &series[j]
		i, ok := index[s.Interval]
		if !ok {
			continue // an interval not computed any more
		}
		if bySym[s.Symbol] == nil {
			bySym[s.Symbol] = make([]*store.Series, len(ivs))
		}
		bySym[s.Symbol][i] = s
	}
	check, err := shard.New(scfg, discard{})
	if err != nil {
		return plan, err
	}
	id, stale := uint32(0), 0
	for sym, ss := range bySym {
		b := ss[base]
		if b == nil || b.Through < 0 {
			continue // nothing applied: it starts afresh
		}
		r := feed.Resume{Last: b.Through, LastTradeID: -1}
		for _, k := range b.Klines {
			if k.LastAggID == b.Through {
				r.LastTradeID, r.LastTime = k.LastTradeID, k.OpenTime
			}
		}
		if r.LastTradeID < 0 || r.LastTime < since {
			// The kline holding Through is older than what was read, or too old
			// to fetch every trade since: start afresh.
			stale++
			continue
		}
		klines := make([][]shard.Kline, len(ivs))
		for i, s := range ss {
			if s != nil {
				klines[i] = current(s.Klines)
			}
		}
		need := make([]int64, len(ivs))
		for i := range need {
			need[i] = math.MaxInt64
		}
		for p, c := range child {
			if c < 0 || ss[p] == nil {
				continue
			}
			last, ok := newestClosed(klines[p])
			if !ok {
				// Its newest closed kline is older than closedSince: read it.
				ks, err := db.Klines(ctx, market, sym, ivs[p].Name, -1, -1, 3)
				if err != nil {
					return plan, err
				}
				if last, ok = newestClosed(ks); ok {
					klines[p] = merged(klines[p], []shard.Kline{last})
				}
			}
			switch {
			case ok:
				need[c] = min(need[c], last.CloseTime+1)
			case len(klines[p]) > 0:
				need[c] = min(need[c], klines[p][0].OpenTime)
			}
		}
		for c, from := range need {
			if from == math.MaxInt64 || ss[c] == nil {
				continue
			}
			if oldest, ok := oldestClosed(klines[c]); ok && oldest.OpenTime <= from {
				continue // loaded already
			}
			ks, err := db.Klines(ctx, market, sym, ivs[c].Name, from, -1, store.MaxLimit)
			if err != nil {
				return plan, err
			}
			klines[c] = merged(klines[c], closedOnly(ks))
		}
		var saved []shard.Saved
		for i, ks := range klines {
			if len(ks) > 0 {
				saved = append(saved, shard.Saved{Interval: i, Through: ss[i].Through, Klines: ks})
			}
		}
		if err := check.Restore(id, saved); err != nil {
			log.Error("cannot resume a symbol's stored klines; it starts afresh (first klines partial)", zap.String("symbol", sym), zap.Error(err))
			continue
		}
		id++
		plan.resume[sym] = r
		plan.saved[sym] = saved
	}
	if stale > 0 {
		log.Info("symbols down too long to fetch every missed trade start afresh; the klines they missed come from REST klines",
			zap.Int("symbols", stale), zap.Time("last_trade_before", time.UnixMilli(since)))
	}
	return plan, nil
}

// current returns a series' stored klines oldest first, without the open rows
// a closed one overtook (the trades after Through rebuild them).
func current(ks []shard.Kline) []shard.Kline {
	out := slices.Clone(ks)
	slices.SortStableFunc(out, func(a, b shard.Kline) int { return cmp.Compare(a.OpenTime, b.OpenTime) })
	if last, ok := newestClosed(out); ok {
		out = slices.DeleteFunc(out, func(k shard.Kline) bool { return !k.Closed && k.OpenTime <= last.OpenTime })
	}
	return out
}

func newestClosed(ks []shard.Kline) (shard.Kline, bool) {
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].Closed {
			return ks[i], true
		}
	}
	return shard.Kline{}, false
}

func oldestClosed(ks []shard.Kline) (shard.Kline, bool) {
	for _, k := range ks {
		if k.Closed {
			return k, true
		}
	}
	return shard.Kline{}, false
}

func closedOnly(ks []shard.Kline) []shard.Kline {
	return slices.DeleteFunc(ks, func(k shard.Kline) bool { return !k.Closed })
}

// merged returns a and b's klines oldest first, one per open time (a's).
func merged(a, b []shard.Kline) []shard.Kline {
	out := append(slices.Clone(a), b...)
	slices.SortStableFunc(out, func(x, y shard.Kline) int { return cmp.Compare(x.OpenTime, y.OpenTime) })
	return slices.CompactFunc(out, func(x, y shard.Kline) bool { return x.OpenTime == y.OpenTime })
}

// discard is the Emitter of the aggregator planResume checks states with.
type discard struct{}

func (discard) Closed(*shard.Kline)         {}
func (discard) Update(*shard.Kline) bool    { return true }
func (discard) Dropped(*parse.Trade, error) {}

// restore gives the shards what the store kept of the symbols followed now.
func (plan resumePlan) restore(p *pipeline.Pipeline, table *parse.SymbolTable, log *zap.Logger) (restored int) {
	names := table.Load()
	for name, saved := range plan.saved {
		i, ok := names.Lookup([]byte(name))
		if !ok {
			continue // not followed any more
		}
		if err := p.Restore(i, saved); err != nil {
			log.Error("cannot restore a symbol's stored klines; it starts afresh (first klines partial)",
				zap.String("symbol", name), zap.Error(err))
			continue
		}
		restored++
	}
	return restored
}

// sinks delivers every kline event to each sink in turn; the first error wins,
// and every sink is closed.
type sinks []pipeline.Sink

func (ss sinks) Kline(k *shard.Kline) error {
	for _, s := range ss {
		if err := s.Kline(k); err != nil {
			return err
		}
	}
	return nil
}

func (ss sinks) Close() error {
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
