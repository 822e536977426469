package shard

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klagg/klagg/parse"
)

func TestIDRunsAgainstSet(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for round := range 200 {
		base := r.Int64N(1e12)
		runs := newIDRuns(base)
		set := map[int64]bool{base: true}
		merges := 0
		for range 300 {
			var id int64
			switch x := r.IntN(10); {
			case x < 6:
				id = runs.last() + 1
			case x < 8:
				id = base + r.Int64N(400) - 50
			default:
				id = base + r.Int64N(1e9) // far ahead: a bogus id
			}
			added, merged := runs.add(id)
			if merged {
				merges++
				set = nil // from here ids between joined ranges count as applied
			}
			if set != nil {
				if added == set[id] {
					t.Fatalf("round %d: add(%d) = %v, set has it: %v", round, id, added, set[id])
				}
				set[id] = true
			}
			if !runs.contains(id) {
				t.Fatalf("round %d: %d not contained after add", round, id)
			}
			if n := len(runs.other) + 1; n > maxRuns {
				t.Fatalf("round %d: %d ranges", round, n)
			}
		}
		for id := range set { // nil after a merge
			if !runs.contains(id) {
				t.Fatalf("round %d: lost %d", round, id)
			}
		}
	}
}

func TestIDRunsInSequenceAllocatesNothing(t *testing.T) {
	runs := newIDRuns(10)
	runs.add(1e9) // a bogus range stays beside the real one
	id := int64(10)
	allocs := testing.AllocsPerRun(1000, func() {
		id++
		if added, _ := runs.add(id); !added {
			t.Fatal("in-sequence id refused")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per in-sequence id", allocs)
	}
}

// A bogus aggTrade id far ahead (a corrupt frame) may spoil its own kline, but
// every real trade after it is applied: the other klines equal a run without it.
func TestBogusIDDamagesOneKline(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	run := func(bogus bool) (*recorder, Counters) {
		rec := newRecorder(t, ivs)
		a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
		start := ms("2024-01-01 00:00:00.000")
		for i := range int64(600) {
			tr := parse.Trade{AggID: 1_000_000_000 + i, FirstID: i, LastID: i, TradeTime: start + i*1000, Price: parse.Decimal(100 + i), Qty: 1}
			a.Apply(&tr)
			if bogus && i == 200 {
				b := tr
				b.AggID, b.Price = 3_000_000_000, 7
				a.Apply(&b)
			}
		}
		a.Flush(start+600_000, false)
		return rec, a.Counters()
	}
	clean, _ := run(false)
	dirty, c := run(true)
	if c.Trades != 601 || c.Duplicates != 0 {
		t.Fatalf("counters %+v: want every real trade applied", c)
	}
	differ := 0
	for key, k := range clean.final {
		if d := dirty.final[key]; d != k {
			differ++
		}
	}
	if differ != 1 || len(dirty.final) != len(clean.final) {
		t.Fatalf("%d of %d klines differ, want only the bogus trade's own", differ, len(clean.final))
	}
}

func TestHoldKeepsKlinesOpenUntilLifted(t *testing.T) {
	ivs, _ := ParseIntervals("1m,1h")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 1000, History: 2}, rec)
	t0 := ms("2024-01-01 00:00:10.000")
	tr := tradeAt(0, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	hold := Hold(0, t0+1000) // trades from 00:00:11 on may still come
	a.Apply(&hold)
	a.Advance(ms("2024-01-01 00:05:00.000"))
	if len(rec.final) != 0 {
		t.Fatalf("held symbol closed %d klines", len(rec.final))
	}
	// The trade the hold waited for arrives, in its period, not as a correction.
	late := tradeAt(0, 2, "2024-01-01 00:00:50.000", "2", "1", false)
	a.Apply(&late)
	lift := Hold(0, NoHold)
	a.Apply(&lift)
	k, ok := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:00.000")}]
	if !ok || k.Flags != 0 || k.Close != dec("2") || k.Count != 4 {
		t.Fatalf("minute 0 after the hold: %+v (closed %v)", k, ok)
	}
	if n := len(rec.final); n != 4 { // minutes 0..3 close at once; the hour stays open
		t.Fatalf("%d klines closed when the hold was lifted, want 4", n)
	}
	if c := a.Counters(); c.Late != 0 || c.TooLate != 0 || c.Commands != 2 {
		t.Fatalf("counters %+v", c)
	}
}

// A hold sent before a symbol's first trade applies to it.
func TestHoldBeforeFirstTrade(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	hold := Hold(3, ms("2024-01-01 00:00:00.000"))
	a.Apply(&hold)
	tr := tradeAt(3, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	a.Advance(ms("2024-01-01 00:03:00.000"))
	if len(rec.final) != 0 {
		t.Fatal("the hold sent before the first trade was ignored")
	}
	lift := Hold(3, NoHold)
	a.Apply(&lift)
	if len(rec.final) != 3 {
		t.Fatalf("%d klines after lifting", len(rec.final))
	}
}

func TestMarkGapReachesClosedKlines(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	for i, at := range []string{"00:00:10", "00:01:10", "00:09:10"} {
		tr := tradeAt(0, int64(i+1), "2024-01-01 "+at+".000", "1", "1", false)
		a.Apply(&tr)
	}
	a.Advance(ms("2024-01-01 00:09:30.000")) // minutes 0..8 closed; 7 and 8 in history
	gap := Command(OpMarkGap, 0, ms("2024-01-01 00:00:30.000"), ms("2024-01-01 00:09:10.000"))
	a.Apply(&gap)
	for m := range int64(9) {
		key := klineKey{0, 0, ms("2024-01-01 00:00:00.000") + m*msMinute}
		switch k := rec.final[key]; {
		case m >= 7 && k.Flags&FlagGap == 0:
			t.Errorf("minute %d in history not re-emitted with FlagGap: %v", m, k.Flags)
		case m < 7 && k.Flags&FlagGap != 0:
			t.Errorf("minute %d beyond history changed in place", m)
		}
	}
	if len(rec.marks) != 7 {
		t.Fatalf("%d marks for minutes 0..6, want 7", len(rec.marks))
	}
	for _, m := range rec.marks {
		if m.Flags != FlagGap || !m.Closed {
			t.Fatalf("mark %+v", m)
		}
	}
	a.Flush(ms("2024-01-01 00:09:59.999"), false)
	if k := rec.final[klineKey{0, 0, ms("2024-01-01 00:09:00.000")}]; k.Flags&FlagGap == 0 {
		t.Fatalf("open minute 9 not flagged: %v", k.Flags)
	}
}

func TestTooLateMarksTheKlineOnce(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 1}, rec)
	for i, at := range []string{"00:00:10", "00:05:10", "00:00:20", "00:00:30"} {
		tr := tradeAt(0, int64(i+1), "2024-01-01 "+at+".000", "1", "1", false)
		a.Apply(&tr)
		a.Advance(ms("2024-01-01 00:05:30.000"))
	}
	c := a.Counters()
	if c.TooLateTrades != 2 || len(rec.dropped) != 2 || len(rec.marks) != 1 || rec.marks[0].Flags != FlagLate {
		t.Fatalf("counters %+v, dropped %d, marks %+v", c, len(rec.dropped), rec.marks)
	}
}

func TestRetiredSymbolTombstone(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	rec.allowHoles = true
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	tr := tradeAt(0, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	retire := Command(OpRetire, 0, 0, 0)
	a.Apply(&retire)
	a.Advance(ms("2024-01-01 00:03:00.000"))
	if a.symbols[0] != nil || len(rec.final) != 1 {
		t.Fatalf("retired symbol: state %v, %d klines", a.symbols[0] != nil, len(rec.final))
	}
	// A stray copy, and a stray trade for the minute already written.
	a.Apply(&tr)
	stray := tradeAt(0, 2, "2024-01-01 00:00:40.000", "9", "1", false)
	a.Apply(&stray)
	if c := a.Counters(); c.Duplicates != 1 || c.TooLate != 1 || len(rec.marks) != 1 || rec.marks[0].Flags != FlagLate {
		t.Fatalf("stray trades: counters %+v, marks %+v", c, rec.marks)
	}
	if k := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:00.000")}]; k.Close != dec("1") || k.Count != 2 {
		t.Fatalf("written kline rewritten: %+v", k)
	}
	// Listed again: a new life from its next trade, with empty klines again.
	again := tradeAt(0, 3, "2024-01-01 00:10:10.000", "5", "1", false)
	a.Apply(&again)
	a.Advance(ms("2024-01-01 00:13:00.000"))
	if _, ok := rec.final[klineKey{0, 0, ms("2024-01-01 00:12:00.000")}]; !ok {
		t.Fatal("relisted symbol has no empty klines")
	}
}

func TestRetiredSymbolTradingAgainBeforeFreed(t *testing.T) {
	ivs, _ := ParseIntervals("1m,1h")
	rec := newRecorder(t, ivs)
	rec.allowHoles = true
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	tr := tradeAt(0, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	retire := Command(OpRetire, 0, 0, 0)
	a.Apply(&retire)
	a.Advance(ms("2024-01-01 00:03:00.000")) // the hour keeps the state alive
	again := tradeAt(0, 2, "2024-01-01 00:05:10.000", "2", "1", false)
	a.Apply(&again)
	a.Advance(ms("2024-01-01 00:08:00.000"))
	// No empty klines while delisted; every minute again once it trades.
	for m := range int64(8) {
		_, ok := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:00.000") + m*msMinute}]
		if want := m == 0 || m >= 5; ok != want {
			t.Fatalf("minute %d closed %v, want %v", m, ok, want)
		}
	}
}

func TestPartialFirstKlines(t *testing.T) {
	ivs, _ := ParseIntervals("1m,1d")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	// Followed since 00:01:00: the first minute is complete, the day is not.
	p := Command(OpPartial, 0, ms("2024-01-01 00:01:00.000"), 0)
	a.Apply(&p)
	tr := tradeAt(0, 1, "2024-01-01 00:01:10.000", "1", "1", false)
	a.Apply(&tr)
	a.Flush(ms("2024-01-02 00:00:00.000"), false)
	if k := rec.final[klineKey{0, 0, ms("2024-01-01 00:01:00.000")}]; k.Flags != 0 {
		t.Fatalf("first minute flags %v, want none", k.Flags)
	}
	if k := rec.final[klineKey{0, 1, ms("2024-01-01 00:00:00.000")}]; k.Flags != FlagPartial {
		t.Fatalf("first day flags %v, want partial", k.Flags)
	}
	if k := rec.final[klineKey{0, 0, ms("2024-01-01 00:02:00.000")}]; k.Flags != FlagEmpty {
		t.Fatalf("second minute flags %v", k.Flags)
	}
}

func TestMaxEmptyBoundsQuietSymbols(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	rec.allowHoles = true
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2, MaxEmpty: 3 * msMinute}, rec)
	tr := tradeAt(0, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	a.Advance(ms("2024-01-01 01:00:00.000"))
	// Minute 0 traded; empty minutes 1 and 2; minute 3 ends past 3 min of silence: quiet.
	if n := len(rec.final); n != 4 {
		t.Fatalf("%d klines, want 4", n)
	}
	if k := rec.final[klineKey{0, 0, ms("2024-01-01 00:03:00.000")}]; k.Flags != FlagEmpty|FlagQuiet {
		t.Fatalf("last empty kline flags %v", k.Flags)
	}
	again := tradeAt(0, 2, "2024-01-01 02:00:10.000", "2", "1", false)
	a.Apply(&again)
	a.Advance(ms("2024-01-01 02:02:00.000"))
	if k, ok := rec.final[klineKey{0, 0, ms("2024-01-01 02:01:00.000")}]; !ok || k.Flags != FlagEmpty || k.Close != dec("2") {
		t.Fatalf("klines do not resume after the silence: %+v %v", k, ok)
	}
	if c := a.Counters(); c.QuietSkipped == 0 || c.QuietSkipped+c.ClosedKlines != 122 {
		t.Fatalf("counters %+v", c)
	}
}

func TestNextClose(t *testing.T) {
	ivs, _ := ParseIntervals("1m,1h")
	a, _ := New(Config{Intervals: ivs, Grace: 2000, History: 2}, nopEmitter{})
	if a.NextClose() != math.MinInt64 {
		t.Fatalf("fresh aggregator NextClose %d", a.NextClose())
	}
	a.Advance(ms("2024-01-01 00:00:30.000"))
	if got, want := a.NextClose(), ms("2024-01-01 00:01:00.000")+2000; got != want {
		t.Fatalf("NextClose %d, want %d", got, want)
	}
}

// Lifting a hold before the watermark closed anything closes nothing (the
// interval's closed mark is still at its minimum: no wrap to the far future).
func TestHoldLiftedBeforeAnyAdvance(t *testing.T) {
	ivs, _ := ParseIntervals("1s")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	tr := tradeAt(0, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	for _, at := range []int64{ms("2024-01-01 00:00:10.000"), NoHold} {
		h := Hold(0, at)
		a.Apply(&h)
	}
	if len(rec.final) != 0 {
		t.Fatalf("%d klines closed with no watermark", len(rec.final))
	}
}
