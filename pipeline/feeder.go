package pipeline

import (
	"encoding/json"
	"errors"
	"math"
	"sync/atomic"
	"unicode"

	"go.uber.org/zap"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/ring"
	"github.com/klagg/klagg/shard"
)

// maxLogPayload bounds the bytes of a bad frame that go into a log line.
const maxLogPayload = 256

// Feeder is a source's handle on the pipeline: it decodes frames, routes trades to the
// shards' rings in batches and publishes the source's watermark. It must be used only
// by the goroutine that runs its Source.
type Feeder struct {
	p        *Pipeline
	id       int
	dec      *parse.Decoder
	rings    []*ring.Ring[parse.Trade]
	stage    [][]parse.Trade
	batch    int
	maxTime  int64
	wm       *watermark
	clocked  bool  // the pipeline's clock bounds the watermark; the source reports progress
	progress int64 // with clocked: exchange time up to which everything was handed over
	live     atomic.Uint64
	log      *zap.Logger
	// partialSince, when set, precedes each symbol's first trade with
	// shard.OpPartial(since): the input holds none of its trades before since.
	partialSince int64
	started      []bool // by symbol: its first trade went out

	stats FeederStats
	snap  published[feederSnap]
}

// FeederStats counts what one source handed over.
type FeederStats struct {
	Frames   uint64 // frames and CSV rows offered
	Bytes    uint64
	Trades   uint64 // trades routed to shards
	Commands uint64 // in-band commands routed to shards
	Learned  uint64 // symbols added on the fly (LearnSymbols)
	Batches  uint64 // ring publications
}

func newFeeder(p *Pipeline, id int, wm *watermark) *Feeder {
	f := &Feeder{
		p:        p,
		id:       id,
		dec:      parse.NewDecoder(p.cfg.Parse, p.symbols),
		batch:    p.cfg.Batch,
		maxTime:  math.MinInt64,
		wm:       wm,
		clocked:  p.cfg.Clock != nil,
		progress: math.MinInt64,
		log:      p.log.With(zap.Int("source", id)),
	}
	wm.v.Store(math.MinInt64)
	wm.max.Store(math.MinInt64)
	for _, a := range p.aggs {
		r := ring.New[parse.Trade](p.cfg.Ring, a.waiter)
		a.addInput(r)
		f.rings = append(f.rings, r)
		f.stage = append(f.stage, make([]parse.Trade, 0, f.batch))
	}
	return f
}

// Symbols returns the table the feeder decodes with.
func (f *Feeder) Symbols() *parse.SymbolTable { return f.p.symbols }

// Frame decodes one WebSocket text frame and routes it if it is an aggTrade. A frame
// that cannot be decoded is counted by reason, logged (sampled, truncated) and dropped;
// nothing else is affected. frame may be reused as soon as Frame returns.
func (f *Feeder) Frame(frame []byte) {
	var t parse.Trade
	if kind, _ := f.Decode(&t, frame); kind == parse.KindAggTrade {
		f.Trade(&t)
	}
}

// captureFrame is Frame for a recorded capture: a capture holds no trade made
// before its first one, so each symbol's first klines that open before it are
// marked partial.
func (f *Feeder) captureFrame(frame []byte) {
	var t parse.Trade
	if kind, _ := f.Decode(&t, frame); kind == parse.KindAggTrade {
		if f.partialSince == 0 {
			f.partialSince = t.TradeTime
		}
		f.Trade(&t)
	}
}

// Decode decodes one frame into dst without routing it, for sources that look at a
// trade before they hand it over (gap detection). A frame that cannot be decoded is
// counted, logged (sampled) and reported as KindOther with ok false.
func (f *Feeder) Decode(dst *parse.Trade, frame []byte) (kind parse.Kind, ok bool) {
	f.stats.Frames++
	f.stats.Bytes += uint64(len(frame))
	kind, err := f.dec.Decode(dst, frame)
	if err != nil {
		if errors.Is(err, parse.ErrUnknownSymbol) && f.p.cfg.LearnSymbols && f.learn(frame) {
			kind, err = f.dec.Decode(dst, frame)
		}
		if err != nil {
			f.reject(err, frame)
			return parse.KindOther, false
		}
	}
	return kind, true
}

// CSVRow decodes one data.binance.vision aggTrades row for symbol and routes it. A
// header row is skipped silently.
func (f *Feeder) CSVRow(row []byte, symbol uint32) {
	f.stats.Frames++
	f.stats.Bytes += uint64(len(row))
	var t parse.Trade
	if err := parse.DecodeCSV(&t, row, symbol); err != nil {
		if errors.Is(err, parse.ErrCSVHeader) {
			return
		}
		f.dec.Counters().Errors[parse.ReasonOf(err)]++
		f.reject(err, row)
		return
	}
	f.Trade(&t)
}

// Trade routes one decoded trade to its shard. The trade is copied.
func (f *Feeder) Trade(t *parse.Trade) {
	f.stats.Trades++
	if t.TradeTime > f.maxTime {
		f.maxTime = t.TradeTime
	}
	if f.partialSince != 0 {
		f.markPartial(t)
	}
	f.route(t)
}

// MarkPartial tells the shards, from now on, that the input holds no trade of a
// symbol before since: the first kline of every interval that opens earlier is
// partial (replays: a day file starts at midnight, a capture when it was started).
// 0 turns it off. Symbols that already traded are not marked again.
func (f *Feeder) MarkPartial(since int64) { f.partialSince = since }

func (f *Feeder) markPartial(t *parse.Trade) {
	if int(t.Symbol) >= len(f.started) {
		f.started = append(f.started, make([]bool, int(t.Symbol)+1-len(f.started))...)
	}
	if !f.started[t.Symbol] {
		f.started[t.Symbol] = true
		f.Command(shard.Command(shard.OpPartial, t.Symbol, f.partialSince, 0))
	}
}

// Command routes an in-band command (shard.Command) to the shard of its symbol, in
// order with the trades this feeder routed before and after it.
func (f *Feeder) Command(c parse.Trade) {
	if c.Control == 0 {
		panic("BUG: Feeder.Command given a trade")
	}
	f.stats.Commands++
	f.route(&c)
}

func (f *Feeder) route(t *parse.Trade) {
	s := shardOf(t.Symbol, len(f.rings))
	f.stage[s] = append(f.stage[s], *t)
	if len(f.stage[s]) == f.batch {
		f.publish(s)
	}
}

// Flush publishes every staged trade and then the source's watermark. Sources call it
// at the end of each read (a WebSocket message, a chunk of a file) so that nothing
// waits in a half-full batch.
func (f *Feeder) Flush() {
	for s := range f.stage {
		if len(f.stage[s]) > 0 {
			f.publish(s)
		}
	}
	f.live.Store(f.stats.Trades)
	f.snap.store(&feederSnap{stats: f.stats, parse: *f.dec.Counters()})
	wm := f.maxTime
	if f.clocked {
		wm = f.progress
	}
	if wm != f.wm.v.Load() {
		f.wm.v.Store(wm)
	}
}

// Progress reports, with Config.Clock, that the source has handed over everything
// up to exchange time t (it read all its connection had to say at t, or it has
// nothing to read); the next Flush publishes it as the source's watermark. A
// source that cannot make progress (blocked by backpressure) holds every kline
// back; one that misses a symbol's trades holds that symbol alone (shard.OpHold).
// Math.MaxInt64 means the source never holds the watermark back.
func (f *Feeder) Progress(t int64) { f.progress = t }

// Routed is the number of trades this feeder has routed so far; any goroutine may
// read it (status lines, capacity tests).
func (f *Feeder) Routed() uint64 { return f.live.Load() }

func (f *Feeder) publish(s int) {
	f.rings[s].Write(f.stage[s])
	f.stage[s] = f.stage[s][:0]
	f.stats.Batches++
}

// finish flushes, records the source's final watermark and closes its rings.
func (f *Feeder) finish() {
	f.Flush()
	f.wm.max.Store(f.maxTime)
	f.wm.v.Store(math.MaxInt64)
	for _, r := range f.rings {
		r.Close()
	}
}

// tooLarge counts an input record too large to read (its head only is at hand).
func (f *Feeder) tooLarge(head []byte) {
	f.stats.Frames++
	f.dec.Counters().Errors[parse.ReasonOf(parse.ErrTooLarge)]++
	f.reject(parse.ErrTooLarge, head)
}

func (f *Feeder) reject(err error, payload []byte) {
	if ce := f.log.Check(zap.WarnLevel, "dropped bad input"); ce != nil {
		if len(payload) > maxLogPayload {
			payload = payload[:maxLogPayload]
		}
		ce.Write(zap.String("reason", parse.ReasonOf(err).String()), zap.Error(err), zap.ByteString("payload", payload))
	}
}

// validSymbol accepts what exchanges use as symbols: 1 to 32 bytes of upper-case
// letters (Binance lists some in Chinese, which have no case) and digits. Anything else in a frame is junk, and
// must not become a symbol (a file name, a log field).
func validSymbol(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) || unicode.IsLower(r) {
			return false
		}
	}
	return true
}

// learn adds the symbol of a frame the table does not know yet. It runs once per new
// symbol, so it may be slow; it reports whether a symbol was added.
func (f *Feeder) learn(frame []byte) bool {
	var env struct {
		S    string `json:"s"`
		Data struct {
			S string `json:"s"`
		} `json:"data"`
	}
	if err := json.Unmarshal(frame, &env); err != nil {
		return false
	}
	name := env.S
	if name == "" {
		name = env.Data.S
	}
	// Exactly as the frame spells it: Binance's symbols are upper case, and a
	// frame that folds them is not Binance's (case folding is for file names
	// and flags only).
	if !validSymbol(name) {
		return false
	}
	f.p.symbols.Add(name)
	f.stats.Learned++
	// The failed attempt was counted as an unknown symbol; it was not lost, and the
	// retry counts the frame again.
	c := f.dec.Counters()
	c.Errors[parse.ReasonOf(parse.ErrUnknownSymbol)]--
	c.Frames[parse.KindAggTrade]--
	return true
}
