package shard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klagg/klagg/parse"
)

// storeSink keeps what a store would: every closed kline (corrections
// replace), and the open klines of the last updates, per (symbol, interval,
// open time).
type storeSink struct {
	rows map[klineKey]Kline
}

func (s *storeSink) Closed(k *Kline) {
	if !k.Mark {
		s.rows[klineKey{k.Symbol, k.Interval, k.OpenTime}] = *k
	}
}
func (s *storeSink) Update(k *Kline) bool {
	s.rows[klineKey{k.Symbol, k.Interval, k.OpenTime}] = *k
	return true
}
func (s *storeSink) Dropped(*parse.Trade, error) {}

// saved turns what the sink kept into Restore's input, as a store's
// LoadSeries would: per interval the klines oldest first and Through, the
// largest last aggTrade id stored.
func (s *storeSink) saved(sym uint32, n int) []Saved {
	out := make([]Saved, n)
	for i := range out {
		out[i] = Saved{Interval: i, Through: -1}
	}
	for key, k := range s.rows {
		if key.sym != sym {
			continue
		}
		sv := &out[key.iv]
		sv.Klines = append(sv.Klines, k)
		sv.Through = max(sv.Through, k.LastAggID)
	}
	for i := range out {
		ks := out[i].Klines
		for a := 1; a < len(ks); a++ {
			for b := a; b > 0 && ks[b].OpenTime < ks[b-1].OpenTime; b-- {
				ks[b], ks[b-1] = ks[b-1], ks[b]
			}
		}
	}
	return out
}

// TestRestoreEqualsUninterrupted cuts a run at a random trade, restores a new
// aggregator from what a store kept (closed klines, maybe not the newest of
// the longer intervals, the last checkpointed open ones, the base's Through),
// applies again every trade after Through (what a restarted daemon fetches),
// and checks that the klines equal those of a run that never stopped.
func TestRestoreEqualsUninterrupted(t *testing.T) {
	ivs, err := ParseIntervals("1m,5m,1h,1d")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Intervals: ivs, Grace: 2000, Lateness: 10 * msMinute}
	for seed := uint64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			var trades []parse.Trade
			at := ms("2024-03-31 23:40:00.000")
			for a := int64(1000); a < 1600; a++ {
				at += r.Int64N(12_000)
				trades = append(trades, parse.Trade{AggID: a, FirstID: 10 * a, LastID: 10*a + r.Int64N(3), TradeTime: at, EventTime: at,
					Price: parse.Decimal(1e8 + r.Uint64N(1e6)), Qty: parse.Decimal(1 + r.Uint64N(1e9)), BuyerMaker: r.IntN(2) == 0})
			}
			end := at + msDay
			// The run that never stopped.
			want := newRecorder(t, ivs)
			a, _ := New(cfg, want)
			for i := range trades {
				a.Apply(&trades[i])
				a.Advance(trades[i].TradeTime)
			}
			a.Flush(end, false)

			// The run that crashed after trade cut, checkpointing open klines
			// only now and then.
			cut := 1 + r.IntN(len(trades)-1)
			store := &storeSink{rows: map[klineKey]Kline{}}
			b, _ := New(cfg, store)
			b.cfg.Intervals = ivs
			for i := range trades[:cut] {
				b.Apply(&trades[i])
				b.Advance(trades[i].TradeTime)
				if r.IntN(7) == 0 {
					b.FlushUpdates(true)
				}
			}
			if r.IntN(2) == 0 {
				// The store fell behind: the newest closed kline of each longer
				// interval did not make it before the crash.
				for iv := 1; iv < len(ivs); iv++ {
					newest := klineKey{open: -1}
					for key, k := range store.rows {
						if key.iv == uint8(iv) && k.Closed && key.open > newest.open {
							newest = key
						}
					}
					delete(store.rows, newest)
				}
			}
			saved := store.saved(0, len(ivs))
			// The restarted run: restore, fetch again from the smallest Through.
			got := newRecorder(t, ivs)
			c, _ := New(cfg, got)
			if err := c.Restore(0, saved); err != nil {
				t.Fatal(err)
			}
			from := saved[0].Through + 1 // 1m, the base
			if from < trades[0].AggID {
				from = trades[0].AggID
			}
			for i := range trades {
				if trades[i].AggID >= from {
					c.Apply(&trades[i])
					c.Advance(trades[i].TradeTime)
				}
			}
			c.Flush(end, false)
			// Every kline closed after the restart equals the uninterrupted one;
			// those closed before it are in the store already, and also equal.
			for key, k := range got.final {
				if w, ok := want.final[key]; !ok || !sameFields(k, w) {
					t.Fatalf("cut at %d: %s kline %d after the restart:\n got  %+v\n want %+v", cut, ivs[key.iv].Name, key.open, k, w)
				}
			}
			for key, k := range store.rows {
				if w, ok := want.final[key]; k.Closed && (!ok || !sameFields(k, w)) {
					t.Fatalf("stored closed kline %v differs", key)
				}
			}
			for key := range want.final {
				_, inGot := got.final[key]
				st, inStore := store.rows[key]
				if !inGot && !(inStore && st.Closed) {
					t.Fatalf("cut at %d: %s kline %d neither closed after the restart nor stored closed", cut, ivs[key.iv].Name, key.open)
				}
			}
		})
	}
}

// sameFields compares the kline fields Binance has, and the ids, not the
// flags that tell how it came to be (a restored kline may be re-emitted).
func sameFields(a, b Kline) bool {
	a.Flags, b.Flags = 0, 0
	return a == b
}

func TestRestoreRejectsBadState(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, nopEmitter{})
	off := Kline{OpenTime: ms("2024-01-01 00:00:30.000"), CloseTime: ms("2024-01-01 00:01:29.999")}
	if err := a.Restore(0, []Saved{{Interval: 0, Through: 5, Klines: []Kline{off}}}); err == nil {
		t.Fatal("a kline off the interval's grid was restored")
	}
	if err := a.Restore(0, []Saved{{Interval: 3, Through: 5}}); err == nil {
		t.Fatal("an unknown interval was restored")
	}
	tr := tradeAt(1, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	if err := a.Restore(1, nil); err == nil {
		t.Fatal("a symbol with state was restored over")
	}
}

// An interval the store kept nothing of starts with its child's first kline
// restored, partial since it opens before it; the watermark moving on before
// the next trade closes nothing from the epoch.
func TestRestoreIntervalNotStarted(t *testing.T) {
	ivs, _ := ParseIntervals("1s,1m")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	open := Kline{OpenTime: ms("2024-01-01 00:00:40.000"), CloseTime: ms("2024-01-01 00:00:40.999"),
		Open: dec("1"), High: dec("1"), Low: dec("1"), Close: dec("1"), Volume: Uint128{Lo: uint64(dec("1"))},
		QuoteVolume: Mul64(uint64(dec("1")), uint64(dec("1"))), Count: 2, FirstAggID: 5, LastAggID: 5, FirstTradeID: 50, LastTradeID: 51}
	if err := a.Restore(0, []Saved{{Interval: 0, Through: 5, Klines: []Kline{open}}}); err != nil {
		t.Fatal(err)
	}
	a.Advance(ms("2024-01-01 00:00:30.000"))
	if len(rec.final) != 0 {
		t.Fatalf("%d klines closed before the restored ones", len(rec.final))
	}
	dup := tradeAt(0, 5, "2024-01-01 00:00:40.100", "1", "1", true)
	a.Apply(&dup)
	tr := tradeAt(0, 6, "2024-01-01 00:00:40.500", "2", "1", true)
	a.Apply(&tr)
	a.Flush(ms("2024-01-01 00:00:59.999"), false)
	if c := a.Counters(); c.Duplicates != 1 {
		t.Fatalf("the trade the restored kline has was applied again: %+v", c)
	}
	if k := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:40.000")}]; k.Flags != 0 || k.Count != 4 || k.Close != dec("2") {
		t.Fatalf("restored 1s kline: %+v", k)
	}
	if k := rec.final[klineKey{0, 1, ms("2024-01-01 00:00:00.000")}]; k.Flags != FlagPartial || k.Count != 4 || k.Open != dec("1") || k.Close != dec("2") {
		t.Fatalf("1m kline started at the restore: %+v", k)
	}
}

// Without the base interval's klines there is nothing to resume: the symbol
// starts afresh; intervals with no member that tiles the others cannot be
// restored at all.
func TestRestoreWithoutBase(t *testing.T) {
	ivs, _ := ParseIntervals("1s,1m")
	a, _ := New(Config{Intervals: ivs}, nopEmitter{})
	m := Kline{OpenTime: ms("2024-01-01 00:00:00.000"), CloseTime: ms("2024-01-01 00:00:59.999"), Count: 1, FirstAggID: 5, LastAggID: 5}
	if err := a.Restore(0, []Saved{{Interval: 1, Through: 5, Klines: []Kline{m}}}); err != nil || a.state(0) != nil {
		t.Fatalf("restored without the base: %v, state %v", err, a.state(0) != nil)
	}
	ivs, _ = ParseIntervals("3m,5m")
	if b, ok := Base(ivs); ok {
		t.Fatalf("3m,5m: base %d", b)
	}
	b, _ := New(Config{Intervals: ivs}, nopEmitter{})
	if err := b.Restore(0, []Saved{{Interval: 0, Through: 5}}); !errors.Is(err, ErrRestore) {
		t.Fatalf("hidden base restored: %v", err)
	}
}
