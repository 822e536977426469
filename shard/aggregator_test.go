package shard

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
)

var (
	update = flag.Bool("update", false, "rewrite testdata golden files")
	seed   = flag.Uint64("seed", 0, "extra seed for TestAggregatorProperty")
)

type nopEmitter struct{}

func (nopEmitter) Closed(*Kline)               {}
func (nopEmitter) Update(*Kline) bool          { return true }
func (nopEmitter) Dropped(*parse.Trade, error) {}

type klineKey struct {
	sym  uint32
	iv   uint8
	open int64
}

// recorder keeps the final state of every closed kline and checks ordering.
type recorder struct {
	t        *testing.T
	final    map[klineKey]Kline
	lastOpen map[[2]uint32]int64 // (sym, iv) -> open time of the last closed, uncorrected kline
	lastNext map[[2]uint32]int64
	refuse   func() bool
	updates  int
	ivs      []Interval
	dropped  []parse.Trade
	marks    []Kline
	// allowHoles accepts a kline after a hole (a quiet or relisted symbol).
	allowHoles bool
	onUpdate   func(k *Kline) // checks each update accepted
}

func (r *recorder) Dropped(t *parse.Trade, why error) {
	if !errors.Is(why, ErrTooLate) {
		r.t.Fatalf("dropped %+v for %v", *t, why)
	}
	r.dropped = append(r.dropped, *t)
}

func newRecorder(t *testing.T, ivs []Interval) *recorder {
	return &recorder{t: t, final: map[klineKey]Kline{}, lastOpen: map[[2]uint32]int64{}, lastNext: map[[2]uint32]int64{}, ivs: ivs}
}

func (r *recorder) Closed(k *Kline) {
	if !k.Closed {
		r.t.Fatalf("Closed got an open kline %+v", *k)
	}
	if k.Mark {
		r.marks = append(r.marks, *k)
		return
	}
	key := klineKey{k.Symbol, k.Interval, k.OpenTime}
	sk := [2]uint32{k.Symbol, uint32(k.Interval)}
	if k.Flags&FlagCorrected == 0 {
		if _, seen := r.final[key]; seen {
			r.t.Fatalf("kline closed twice without FlagCorrected: %+v", *k)
		}
		if next, ok := r.lastNext[sk]; ok && k.OpenTime != next && !(r.allowHoles && k.OpenTime > next) {
			r.t.Fatalf("sym %d %s: closed %d after a kline ending at %d", k.Symbol, r.ivs[k.Interval].Name, k.OpenTime, next)
		}
		r.lastOpen[sk], r.lastNext[sk] = k.OpenTime, k.CloseTime+1
	} else if _, seen := r.final[key]; !seen {
		r.t.Fatalf("correction of a kline never closed: %+v", *k)
	}
	r.final[key] = *k
}

func (r *recorder) Update(k *Kline) bool {
	if k.Closed || k.FirstAggID < 0 {
		r.t.Fatalf("Update got %+v", *k)
	}
	if r.refuse != nil && r.refuse() {
		return false
	}
	r.updates++
	if r.onUpdate != nil {
		r.onUpdate(k)
	}
	return true
}

// refKline is the plain reference aggregator's kline.
type refKline struct {
	open, high, low, close          parse.Decimal
	vol, quote, tbVol, tbQuote      *big.Int
	count                           int64
	firstTrade, lastTrade, firstAgg int64
	lastAgg                         int64
	empty                           bool
}

func refOpen(iv Interval, t int64) int64 {
	if iv.Months > 0 {
		tm := time.UnixMilli(t).UTC()
		idx := (tm.Year()-1970)*12 + int(tm.Month()) - 1
		idx -= ((idx % iv.Months) + iv.Months) % iv.Months
		return time.Date(1970, time.Month(idx+1), 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	}
	o := t - iv.Origin
	q := o / iv.Millis
	if o%iv.Millis < 0 {
		q--
	}
	return q*iv.Millis + iv.Origin
}

func refNext(iv Interval, open int64) int64 {
	if iv.Months > 0 {
		tm := time.UnixMilli(open).UTC()
		return time.Date(tm.Year(), tm.Month()+time.Month(iv.Months), 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	}
	return open + iv.Millis
}

// reference aggregates trades plainly: dedupe by the set of applied ids, group by
// period, fill empty periods from the first one through max(last traded,
// last period closing at or before flushWM).
func reference(ivs []Interval, trades []parse.Trade, flushWM int64) map[klineKey]refKline {
	out := map[klineKey]refKline{}
	seen := map[[2]int64]bool{}
	applied := map[uint32][]parse.Trade{}
	for _, t := range trades {
		if key := [2]int64{int64(t.Symbol), t.AggID}; !seen[key] {
			seen[key] = true
			applied[t.Symbol] = append(applied[t.Symbol], t)
		}
	}
	for sym, ts := range applied {
		for i, iv := range ivs {
			m := map[int64]*refKline{}
			first, lastTraded := int64(math.MaxInt64), int64(math.MinInt64)
			for _, t := range ts {
				o := refOpen(iv, t.TradeTime)
				first, lastTraded = min(first, o), max(lastTraded, o)
				k := m[o]
				if k == nil {
					k = &refKline{open: t.Price, high: t.Price, low: t.Price, vol: new(big.Int), quote: new(big.Int), tbVol: new(big.Int), tbQuote: new(big.Int), firstTrade: t.FirstID, firstAgg: t.AggID}
					m[o] = k
				}
				k.high, k.low, k.close = max(k.high, t.Price), min(k.low, t.Price), t.Price
				k.lastTrade, k.lastAgg = t.LastID, t.AggID
				k.count += t.LastID - t.FirstID + 1
				q := new(big.Int).SetUint64(uint64(t.Qty))
				pq := new(big.Int).Mul(new(big.Int).SetUint64(uint64(t.Price)), q)
				k.vol.Add(k.vol, q)
				k.quote.Add(k.quote, pq)
				if !t.BuyerMaker {
					k.tbVol.Add(k.tbVol, q)
					k.tbQuote.Add(k.tbQuote, pq)
				}
			}
			var prev parse.Decimal
			for o := first; o <= lastTraded || refNext(iv, o)-1 <= flushWM; o = refNext(iv, o) {
				k := m[o]
				if k == nil {
					z := new(big.Int)
					k = &refKline{open: prev, high: prev, low: prev, close: prev, vol: z, quote: z, tbVol: z, tbQuote: z, firstTrade: -1, lastTrade: -1, firstAgg: -1, lastAgg: -1, empty: true}
				}
				prev = k.close
				out[klineKey{sym, uint8(i), o}] = *k
			}
		}
	}
	return out
}

func sameKline(k *Kline, r *refKline) bool {
	return k.Open == r.open && k.High == r.high && k.Low == r.low && k.Close == r.close &&
		u128Big(k.Volume).Cmp(r.vol) == 0 && u128Big(k.QuoteVolume).Cmp(r.quote) == 0 &&
		u128Big(k.TakerBuyVolume).Cmp(r.tbVol) == 0 && u128Big(k.TakerBuyQuoteVolume).Cmp(r.tbQuote) == 0 &&
		k.Count == r.count && k.FirstTradeID == r.firstTrade && k.LastTradeID == r.lastTrade &&
		k.FirstAggID == r.firstAgg && k.LastAggID == r.lastAgg && (k.Flags&FlagEmpty != 0) == r.empty
}

var propertyStarts = []string{
	"2024-02-29 23:58:30.000", // leap day -> March, Thursday
	"2023-12-31 23:58:00.000", // Sunday -> Monday, year and month boundary
	"2025-02-28 23:59:00.000", // non-leap February
	"2017-08-19 23:59:30.000", // 3d boundary (2017-08-20 opens a 3d period)
	"2024-03-31 23:59:40.000", // quarter boundary for 3M
	"1970-01-01 00:00:00.000",
}

func propertyIntervals(t *testing.T) []Interval {
	ivs := BinanceIntervals(true)
	extra, err := ParseIntervals("90m,45s,10m,3M,2w,2d")
	if err != nil {
		t.Fatal(err)
	}
	return append(ivs, extra...)
}

func TestAggregatorProperty(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if *seed != 0 {
		seeds = append(seeds, *seed)
	}
	n := 1500
	if testing.Short() {
		n = 500
	}
	for _, s := range seeds {
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { runProperty(t, s, n) })
	}
}

func runProperty(t *testing.T, seed uint64, n int) {
	r := rand.New(rand.NewPCG(seed, 0x6b6c61676721))
	ivs := propertyIntervals(t)
	rec := newRecorder(t, ivs)
	rec.refuse = func() bool { return r.IntN(4) == 0 }
	const grace = 2000
	a, err := New(Config{Intervals: ivs, Grace: grace, History: 3}, rec)
	if err != nil {
		t.Fatal(err)
	}
	base := ms(propertyStarts[seed%uint64(len(propertyStarts))]) - r.Int64N(60_000)
	nsym := 1 + r.IntN(4)
	stepMax := []int64{900, 2500}[seed%2] // sparse seeds leave empty seconds between trades
	maxBatch := []int{3, 20, 6}[seed%3]   // trades between Advance calls
	type symGen struct {
		started   bool
		firstTime int64
		agg, tid  int64
		price     parse.Decimal
		recent    []parse.Trade
	}
	gens := make([]symGen, nsym)
	var trades []parse.Trade
	// Every update, base or folded, is the kline of the trades applied so far.
	var sofar map[klineKey]refKline
	sofarLen := -1
	rec.onUpdate = func(k *Kline) {
		if sofarLen != len(trades) {
			sofar, sofarLen = reference(ivs, trades, math.MinInt64), len(trades)
		}
		key := klineKey{k.Symbol, k.Interval, k.OpenTime}
		if want, ok := sofar[key]; !ok || !sameKline(k, &want) {
			t.Fatalf("update sym=%d %s open=%s after %d trades:\n got %+v\nwant %+v", key.sym, ivs[key.iv].Name, time.UnixMilli(key.open).UTC(), len(trades), *k, want)
		}
	}
	maxSeen := int64(math.MinInt64)
	for i := 0; i < n; {
		batch := 1 + r.IntN(maxBatch)
		for ; batch > 0 && i < n; batch-- {
			i++
			switch x := r.IntN(1000); {
			case x < 2:
				base += r.Int64N(3 * msHour)
			case x < 10:
				base += r.Int64N(20 * msMinute)
			default:
				base += r.Int64N(stepMax)
			}
			sym := uint32(r.IntN(nsym))
			g := &gens[sym]
			if g.started && len(g.recent) > 0 && r.IntN(30) == 0 {
				d := g.recent[r.IntN(len(g.recent))] // replayed overlap
				trades = append(trades, d)
				a.Apply(&d)
				continue
			}
			tt := base
			if !g.started {
				g.started, g.firstTime = true, base
				g.agg, g.tid = r.Int64N(1e9), r.Int64N(1e9)
				g.price = parse.Decimal(1 + r.Uint64N(1e14))
			} else if r.IntN(4) == 0 {
				tt = max(base-r.Int64N(4900), g.firstTime) // out of order, maybe late (within History)
			}
			g.agg++
			if r.IntN(50) == 0 {
				g.agg += 1 + r.Int64N(5) // id gap
			}
			cnt := 1 + r.Int64N(4)
			g.price = max(1, parse.Decimal(int64(g.price)+int64(g.price)/1000*(r.Int64N(21)-10)))
			qty := parse.Decimal(1 + r.Uint64N(1e12))
			if r.IntN(100) == 0 {
				qty = parse.Decimal(math.MaxUint64 - r.Uint64N(1000))
			}
			tr := parse.Trade{AggID: g.agg, FirstID: g.tid + 1, LastID: g.tid + cnt, TradeTime: tt, EventTime: tt,
				Price: g.price, Qty: qty, Symbol: sym, BuyerMaker: r.IntN(2) == 0}
			g.tid += cnt
			g.recent = append(g.recent, tr)
			if len(g.recent) > 5 {
				g.recent = g.recent[1:]
			}
			trades = append(trades, tr)
			maxSeen = max(maxSeen, tt)
			a.Apply(&tr)
		}
		a.Advance(maxSeen)
		if r.IntN(5) == 0 {
			a.FlushUpdates(true)
		}
	}
	a.Flush(maxSeen, true)
	c := a.Counters()
	if c.TooLate != 0 {
		t.Fatalf("generator produced too-late trades: %+v", c)
	}
	ref := reference(ivs, trades, maxSeen)
	for key, want := range ref {
		got, ok := rec.final[key]
		if !ok {
			t.Fatalf("missing kline sym=%d %s open=%s", key.sym, ivs[key.iv].Name, time.UnixMilli(key.open).UTC())
		}
		if !sameKline(&got, &want) {
			t.Fatalf("sym=%d %s open=%s:\n got %+v\nwant %+v", key.sym, ivs[key.iv].Name, time.UnixMilli(key.open).UTC(), got, want)
		}
		if got.CloseTime != refNext(ivs[key.iv], key.open)-1 {
			t.Fatalf("close time %d for %+v", got.CloseTime, key)
		}
	}
	if len(rec.final) != len(ref) {
		for key := range rec.final {
			if _, ok := ref[key]; !ok {
				t.Fatalf("unexpected kline sym=%d %s open=%s", key.sym, ivs[key.iv].Name, time.UnixMilli(key.open).UTC())
			}
		}
	}
	t.Logf("%d trades, %d klines, counters %+v", len(trades), len(ref), c)
	if uint64(len(rec.final)) != c.ClosedKlines {
		t.Fatalf("%d distinct klines, %d closed", len(rec.final), c.ClosedKlines)
	}
}

// tradeAt builds a trade; ids follow the AggID.
func tradeAt(sym uint32, agg int64, at string, price, qty string, buyerMaker bool) parse.Trade {
	return parse.Trade{AggID: agg, FirstID: agg * 10, LastID: agg*10 + 1, TradeTime: ms(at), EventTime: ms(at),
		Price: dec(price), Qty: dec(qty), Symbol: sym, BuyerMaker: buyerMaker}
}

// dec parses a plain decimal with at most 8 fractional digits.
func dec(s string) parse.Decimal {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("bad decimal " + s)
	}
	r.Mul(r, big.NewRat(1e8, 1))
	if !r.IsInt() {
		panic("too many digits " + s)
	}
	return parse.Decimal(r.Num().Uint64())
}

// textEmitter writes the event stream as text.
type textEmitter struct {
	buf    bytes.Buffer
	ivs    []Interval
	refuse int // refuse the next n updates
}

func (e *textEmitter) line(kind string, k *Kline) {
	fmt.Fprintf(&e.buf, "%-7s sym=%d %-3s %s flags=%s agg=%d..%d ids=%d..%d %s\n", kind, k.Symbol, e.ivs[k.Interval].Name,
		time.UnixMilli(k.OpenTime).UTC().Format("15:04:05"), k.Flags, k.FirstAggID, k.LastAggID, k.FirstTradeID, k.LastTradeID, k.AppendCSV(nil))
}

func (e *textEmitter) Closed(k *Kline) {
	if k.Mark {
		fmt.Fprintf(&e.buf, "mark    sym=%d %-3s %s flags=%s\n", k.Symbol, e.ivs[k.Interval].Name, time.UnixMilli(k.OpenTime).UTC().Format("15:04:05"), k.Flags)
		return
	}
	e.line("closed", k)
}
func (e *textEmitter) Dropped(t *parse.Trade, why error) {
	fmt.Fprintf(&e.buf, "dropped sym=%d agg=%d: %v\n", t.Symbol, t.AggID, why)
}
func (e *textEmitter) Update(k *Kline) bool {
	if e.refuse > 0 {
		e.refuse--
		fmt.Fprintf(&e.buf, "refused sym=%d %s\n", k.Symbol, e.ivs[k.Interval].Name)
		return false
	}
	e.line("update", k)
	return true
}

func TestGolden(t *testing.T) {
	ivs, err := ParseIntervals("1m,3m")
	if err != nil {
		t.Fatal(err)
	}
	e := &textEmitter{ivs: ivs}
	a, err := New(Config{Intervals: ivs, Grace: 2000, History: 2}, e)
	if err != nil {
		t.Fatal(err)
	}
	day := "2024-02-29 "
	apply := func(tr parse.Trade) {
		fmt.Fprintf(&e.buf, "apply   sym=%d agg=%d %s p=%s q=%s m=%v\n", tr.Symbol, tr.AggID,
			time.UnixMilli(tr.TradeTime).UTC().Format("15:04:05.000"), tr.Price, tr.Qty, tr.BuyerMaker)
		a.Apply(&tr)
	}
	advance := func(at string) {
		fmt.Fprintf(&e.buf, "advance %s\n", at)
		a.Advance(ms(day + at))
	}
	apply(tradeAt(0, 100, day+"00:00:10.000", "10.5", "2", false))
	apply(tradeAt(0, 101, day+"00:00:50.000", "11", "0.5", true))
	apply(tradeAt(0, 102, day+"00:01:30.000", "10.25", "1.00000001", false))
	apply(tradeAt(0, 102, day+"00:01:30.000", "10.25", "1.00000001", false)) // duplicate
	apply(tradeAt(0, 103, day+"00:00:59.500", "12", "3", true))              // out of order, within grace
	e.refuse = 1
	fmt.Fprintf(&e.buf, "updates\n")
	a.FlushUpdates(true)
	fmt.Fprintf(&e.buf, "updates\n")
	a.FlushUpdates(true)
	advance("00:02:05.000")
	advance("00:05:03.000")                                     // three empty minutes
	apply(tradeAt(0, 104, day+"00:03:30.000", "9", "1", false)) // late: corrects 00:03 and the empty 00:04
	apply(tradeAt(1, 7, day+"00:05:10.000", "0.0001", "100000", false))
	apply(tradeAt(0, 105, day+"00:00:30.000", "8", "1", true)) // too late for 1m, a correction for 3m
	fmt.Fprintf(&e.buf, "updates\n")
	a.FlushUpdates(true)
	advance("00:06:01.000")
	fmt.Fprintf(&e.buf, "flush 00:07:00.000 includeOpen\n")
	a.Flush(ms(day+"00:07:00.000"), true)
	fmt.Fprintf(&e.buf, "counters %+v\n", a.Counters())

	path := filepath.Join("testdata", "golden.txt")
	if *update {
		if err := os.WriteFile(path, e.buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(want, e.buf.Bytes()) {
		t.Fatalf("event stream differs from %s (run with -update after checking):\n%s", path, e.buf.String())
	}
}

func TestOverflow(t *testing.T) {
	ivs, _ := ParseIntervals("1m,1h")
	rec := newRecorder(t, ivs)
	a, err := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	if err != nil {
		t.Fatal(err)
	}
	maxDec := parse.Decimal(math.MaxUint64)
	// Each trade adds (2^64-1)^2 ~ 2^128 - 2^65 to the quote volume: the second overflows.
	for i := range int64(3) {
		tr := parse.Trade{AggID: i + 1, FirstID: i, LastID: i, TradeTime: ms("2024-01-01 00:00:01.000") + i, Price: maxDec, Qty: maxDec}
		a.Apply(&tr)
	}
	tr := parse.Trade{AggID: 10, FirstID: 10, LastID: 10, TradeTime: ms("2024-01-01 00:01:01.000"), Price: 1, Qty: 1}
	a.Apply(&tr)
	a.Flush(ms("2024-01-01 00:01:59.999"), false)
	k := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:00.000")}]
	if k.Flags&FlagOverflow == 0 || k.QuoteVolume != MaxUint128 || k.Count != 3 {
		t.Fatalf("want overflowed kline, got %+v", k)
	}
	if k.Volume.Cmp(Uint128{Hi: 2, Lo: math.MaxUint64 - 2}) != 0 { // 3*(2^64-1) fits
		t.Fatalf("volume %v", k.Volume)
	}
	k2 := rec.final[klineKey{0, 0, ms("2024-01-01 00:01:00.000")}]
	if k2.Flags != 0 || k2.QuoteVolume != (Uint128{Lo: 1}) {
		t.Fatalf("next kline %+v", k2)
	}
	// 1m overflowed once, 1h once (still open).
	if c := a.Counters(); c.Overflows != 2 {
		t.Fatalf("counters %+v", c)
	}
}

func TestNewValidates(t *testing.T) {
	m, _ := ParseInterval("1m")
	h, _ := ParseInterval("60m")
	many := make([]Interval, 256)
	for i := range many {
		many[i], _ = ParseInterval(fmt.Sprintf("%dm", i+1))
	}
	for _, cfg := range []Config{
		{Intervals: []Interval{}, Grace: 0},
		{Intervals: []Interval{m, m}},
		{Intervals: []Interval{h, {Name: "1h", Millis: msHour}}},
		{Intervals: []Interval{m}, Grace: -1},
		{Intervals: []Interval{m}, History: -1},
		{Intervals: []Interval{{Name: "bad"}}},
		{Intervals: many},
	} {
		if _, err := New(cfg, nopEmitter{}); !errors.Is(err, ErrConfig) && !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrInterval) {
			t.Errorf("New(%v) error %v", cfg.Intervals[:min(len(cfg.Intervals), 2)], err)
		}
	}
	if _, err := New(Config{Intervals: many[:255]}, nopEmitter{}); err != nil {
		t.Fatal(err)
	}
	a, err := New(DefaultConfig(), nopEmitter{})
	if err != nil || len(a.Config().Intervals) != 15 {
		t.Fatal(err)
	}
}

func TestRetire(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	for i, at := range []string{"00:00:10", "00:02:10"} {
		tr := tradeAt(0, int64(i+1), "2024-01-01 "+at+".000", "1", "1", false)
		a.Apply(&tr)
		tr.Symbol = 1
		a.Apply(&tr)
	}
	a.Retire(0)
	a.Advance(ms("2024-01-01 00:10:00.000"))
	var got [2][]int64
	for k := range rec.final {
		got[k.sym] = append(got[k.sym], (k.open-ms("2024-01-01 00:00:00.000"))/msMinute)
	}
	slices.Sort(got[0])
	slices.Sort(got[1])
	if !slices.Equal(got[0], []int64{0, 1, 2}) || len(got[1]) != 10 {
		t.Fatalf("retired symbol klines %v, live symbol %v", got[0], got[1])
	}
	if a.symbols[0] != nil || a.live != 1 {
		t.Fatal("retired symbol state not freed")
	}
}

func TestMarkGap(t *testing.T) {
	ivs, _ := ParseIntervals("1m,1h")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	tr := tradeAt(0, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	a.MarkGap(0, ms("2024-01-01 00:00:30.000"), ms("2024-01-01 00:01:10.000"))
	a.Flush(ms("2024-01-01 00:02:59.999"), false)
	for min, want := range []Flags{FlagGap, FlagGap | FlagEmpty, FlagEmpty} {
		k := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:00.000") + int64(min)*msMinute}]
		if k.Flags != want {
			t.Errorf("minute %d flags %v, want %v", min, k.Flags, want)
		}
	}
	a.Flush(ms("2024-01-01 00:59:59.999"), false)
	if k := rec.final[klineKey{0, 1, ms("2024-01-01 00:00:00.000")}]; k.Flags != FlagGap {
		t.Errorf("1h flags %v", k.Flags)
	}
}

// A symbol whose first trade is for a period the watermark already closed gets
// that kline (and the empty ones up to the watermark) at once.
func TestFirstTradeBehindWatermark(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	a.Advance(ms("2024-01-01 00:03:00.000"))
	tr := tradeAt(5, 1, "2024-01-01 00:00:10.000", "1", "1", false)
	a.Apply(&tr)
	if len(rec.final) != 3 {
		t.Fatalf("%d klines closed, want 3", len(rec.final))
	}
}

// A trade far ahead of the watermark closes the oldest periods early; a later
// trade into them is a correction.
func TestEarlyClose(t *testing.T) {
	ivs, _ := ParseIntervals("1s")
	rec := newRecorder(t, ivs)
	a, _ := New(Config{Intervals: ivs, Grace: 2000, History: 2}, rec)
	for i, at := range []string{"00:00:00.500", "00:00:10.500", "00:00:09.500"} {
		tr := tradeAt(0, int64(i+1), "2024-01-01 "+at, "1", "1", false)
		a.Apply(&tr)
	}
	c := a.Counters()
	if c.EarlyCloses != 7 || c.Late != 0 || c.ClosedKlines != 7 {
		t.Fatalf("%+v", c)
	}
	a.Flush(ms("2024-01-01 00:00:10.999"), false)
	if k := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:09.000")}]; k.Count != 2 || k.Flags != 0 {
		t.Fatalf("%+v", k)
	}
}

func steadyAggregator(tb testing.TB, ivs []Interval) (*Aggregator, *parse.Trade) {
	a, err := New(Config{Intervals: ivs, Grace: 2000, History: 2}, nopEmitter{})
	if err != nil {
		tb.Fatal(err)
	}
	tr := &parse.Trade{AggID: 1, FirstID: 1, LastID: 1, TradeTime: ms("2024-02-29 12:00:00.000"), Price: 123456789, Qty: 100000000}
	a.Apply(tr)
	return a, tr
}

func TestAllocs(t *testing.T) {
	a, tr := steadyAggregator(t, BinanceIntervals(true))
	if n := testing.AllocsPerRun(1000, func() {
		tr.AggID++
		tr.TradeTime += 7 // crosses 1s boundaries: slow path and closes too
		a.Apply(tr)
	}); n != 0 {
		t.Fatalf("Apply allocates %v", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		tr.AggID++
		tr.TradeTime += 333
		a.Apply(tr)
		a.Advance(tr.TradeTime)
		a.FlushUpdates(true)
	}); n != 0 {
		t.Fatalf("Apply+Advance+FlushUpdates allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { a.Advance(tr.TradeTime) }); n != 0 {
		t.Fatalf("Advance allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { a.FlushUpdates(true) }); n != 0 {
		t.Fatalf("FlushUpdates allocates %v", n)
	}
	var k Kline
	buf := make([]byte, 0, 512)
	k.Volume, k.QuoteVolume = MaxUint128, MaxUint128
	if n := testing.AllocsPerRun(100, func() { buf = k.AppendCSV(buf[:0]) }); n != 0 {
		t.Fatalf("AppendCSV allocates %v", n)
	}
}

func TestAppendCSV(t *testing.T) {
	k := Kline{OpenTime: 1570752000000, CloseTime: 1570752059999, Open: dec("0.00141342"), High: dec("0.00141557"), Low: dec("0.00141266"),
		Close: dec("0.00141418"), Volume: Uint128{Lo: 148200000000}, QuoteVolume: Mul64(uint64(dec("0.00141342")), uint64(dec("1482"))),
		Count: 12, TakerBuyVolume: Uint128{Lo: 50}, TakerBuyQuoteVolume: Uint128{}}
	got := string(k.AppendCSV(nil))
	want := "1570752000000,0.00141342,0.00141557,0.00141266,0.00141418,1482,1570752059999,2.09468844,12,0.0000005,0,0"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if n := len(bytes.Split([]byte(CSVHeader), []byte(","))); n != 12 {
		t.Fatal(n)
	}
	// Data-quality flags replace the ignore column; a correction is exact and is not one.
	for flags, last := range map[Flags]string{FlagCorrected | FlagEmpty: ",0", FlagGap | FlagCorrected: ",gap", FlagOverflow | FlagGap: ",overflow|gap"} {
		k.Flags = flags
		if got := string(k.AppendCSV(nil)); !strings.HasSuffix(got, "0.0000005,0"+last) {
			t.Errorf("flags %v: %s", flags, got)
		}
	}
}

// TestCountOverflow: trade counts that wrap int64 saturate and flag the kline.
func TestCountOverflow(t *testing.T) {
	ivs, _ := ParseIntervals("1m")
	rec := newRecorder(t, ivs)
	a, err := New(Config{Intervals: ivs, Grace: 0, History: 2}, rec)
	if err != nil {
		t.Fatal(err)
	}
	// parse bounds one aggTrade to 2^40 raw trades; the shard must not rely on it:
	// three of 2^62 wrap an int64.
	const per = 1 << 62
	for i := range int64(3) {
		tr := parse.Trade{AggID: i + 1, FirstID: i * per, LastID: i*per + per - 1, TradeTime: ms("2024-01-01 00:00:01.000"), Price: 1, Qty: 1}
		a.Apply(&tr)
	}
	a.Flush(ms("2024-01-01 00:00:59.999"), false)
	k := rec.final[klineKey{0, 0, ms("2024-01-01 00:00:00.000")}]
	if k.Flags&FlagOverflow == 0 || k.Count != math.MaxInt64 || a.Counters().Overflows != 1 {
		t.Fatalf("want a saturated, flagged count: count %d flags %v overflows %d", k.Count, k.Flags, a.Counters().Overflows)
	}
}

// TestLateness: a trade 5 s late is dropped for 1s klines with two klines of
// history, and applied as a correction once Lateness covers 10 s, or once a
// 1m interval folding the 1s klines keeps them until its minute closes. (The
// 1m kline is still open either way, so the trade is on time there.)
func TestLateness(t *testing.T) {
	for _, tc := range []struct {
		ivs           string
		lateness      int64
		late, tooLate uint64
	}{
		{"1s", 0, 0, 1},
		{"1s", 10_000, 1, 0},
		{"1s,1m", 0, 1, 0},
	} {
		ivs, _ := ParseIntervals(tc.ivs)
		rec := newRecorder(t, ivs)
		a, err := New(Config{Intervals: ivs, Grace: 0, History: 2, Lateness: tc.lateness}, rec)
		if err != nil {
			t.Fatal(err)
		}
		base := ms("2024-01-01 00:00:10.000")
		for i, at := range []int64{base, base + 9000} {
			tr := parse.Trade{AggID: int64(i + 1), FirstID: int64(i), LastID: int64(i), TradeTime: at, Price: 100, Qty: 1}
			a.Apply(&tr)
			a.Advance(at)
		}
		late := parse.Trade{AggID: 3, FirstID: 2, LastID: 2, TradeTime: base + 4000, Price: 90, Qty: 1}
		a.Apply(&late)
		if c := a.Counters(); c.TooLate != tc.tooLate || c.Late != tc.late {
			t.Fatalf("%s lateness %d: late %d too late %d", tc.ivs, tc.lateness, c.Late, c.TooLate)
		}
		k := rec.final[klineKey{0, 0, base + 4000}]
		if tc.late > 0 && (k.Count != 1 || k.Close != 90 || k.Flags&FlagCorrected == 0) {
			t.Fatalf("%s lateness %d: 1s kline %+v", tc.ivs, tc.lateness, k)
		}
		if len(ivs) > 1 {
			a.Flush(ms("2024-01-01 00:00:59.999"), false)
			if m := rec.final[klineKey{0, 1, ms("2024-01-01 00:00:00.000")}]; m.Count != 3 || m.Low != 90 || m.Close != 90 {
				t.Fatalf("1m kline %+v", m)
			}
		}
	}
}

// updateCounter counts running updates by symbol and interval.
type updateCounter struct {
	nopEmitter
	n map[[2]uint32]int
}

func (u *updateCounter) Update(k *Kline) bool {
	u.n[[2]uint32{k.Symbol, uint32(k.Interval)}]++
	return true
}

// A round of parents' updates spread over calls: every call emits every
// changed base kline, each symbol due in the round gets its parents' updates
// exactly once, a few per call, and symbols that trade during the round wait
// for the next one.
func TestFlushUpdatesSomeRounds(t *testing.T) {
	ivs, err := ParseIntervals("1m,5m,1h")
	if err != nil {
		t.Fatal(err)
	}
	u := &updateCounter{n: map[[2]uint32]int{}}
	a, err := New(Config{Intervals: ivs, Grace: 2000}, u)
	if err != nil {
		t.Fatal(err)
	}
	const syms, per = 10, 3
	agg := int64(1)
	trade := func(sym uint32, sec int) {
		tr := tradeAt(sym, agg, fmt.Sprintf("2024-02-29 00:00:%02d.000", sec), "1", "1", false)
		agg++
		a.Apply(&tr)
	}
	parentUpdates := func() (n int) {
		for k, c := range u.n {
			if k[1] > 0 {
				n += c
			}
		}
		return n
	}
	for s := range uint32(syms) {
		trade(s, 1)
	}
	a.StartParents()
	calls := 0
	for done := false; !done; calls++ {
		before := parentUpdates()
		done = a.FlushUpdatesSome(per)
		if got := parentUpdates() - before; got > 2*per {
			t.Fatalf("call %d emitted %d parents' updates, want at most %d (2 parents of %d symbols)", calls, got, 2*per, per)
		}
		if calls == 0 {
			trade(0, 2)      // folded in this call already: due again next round
			trade(syms, 2)   // a new symbol: next round
			trade(syms-1, 3) // not folded yet: folded once, with this trade
		}
	}
	if want := (syms + per - 1) / per; calls != want {
		t.Errorf("round took %d calls, want %d", calls, want)
	}
	for s := range uint32(syms + 1) {
		for i := range ivs {
			got, want := u.n[[2]uint32{s, uint32(i)}], 1
			switch {
			case i == 0 && (s == 0 || s == syms-1): // base: again after its second trade
				want = 2
			case i > 0 && s == syms: // its parents wait for the next round
				want = 0
			}
			if got != want {
				t.Errorf("symbol %d interval %d: %d updates, want %d", s, i, got, want)
			}
		}
	}
	if !a.Pending() {
		t.Error("Pending false with symbols 0 and 10 due in the next round")
	}
	a.StartParents()
	if !a.FlushUpdatesSome(per) {
		t.Error("second round of two symbols not done in one call")
	}
	for s, want := range map[uint32]int{0: 2, syms: 1} {
		if got := u.n[[2]uint32{s, 1}]; got != want {
			t.Errorf("symbol %d: %d 5m updates after two rounds, want %d", s, got, want)
		}
	}
	if a.Pending() {
		t.Error("Pending true after both rounds")
	}
}
