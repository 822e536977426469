package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"sync/atomic"
	"unicode"

	"go.uber.org/zap"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/ring"
)

// maxLogPayload bounds the bytes of a bad frame that go into a log line.
const maxLogPayload = 256

// Feeder is a source's handle on the pipeline: it decodes frames, routes trades to the
// shards' rings in batches and publishes the source's watermark. It must be used only
// by the goroutine that runs its Source.
type Feeder struct {
	p       *Pipeline
	id      int
	dec     *parse.Decoder
	rings   []*ring.Ring[parse.Trade]
	stage   [][]parse.Trade
	batch   int
	maxTime int64
	wm      *watermark
	clocked bool  // the pipeline's clock moves the watermark; the feeder only holds it
	hold    int64 // with clocked: the watermark this source allows
	live    atomic.Uint64
	log     *zap.Logger

	stats FeederStats
}

// FeederStats counts what one source handed over.
type FeederStats struct {
	Frames  uint64 // frames and CSV rows offered
	Bytes   uint64
	Trades  uint64 // trades routed to shards
	Learned uint64 // symbols added on the fly (LearnSymbols)
	Batches uint64 // ring publications
}

func newFeeder(p *Pipeline, id int, wm *watermark) *Feeder {
	f := &Feeder{
		p:       p,
		id:      id,
		dec:     parse.NewDecoder(p.cfg.Parse, p.symbols),
		batch:   p.cfg.Batch,
		maxTime: math.MinInt64,
		wm:      wm,
		clocked: p.cfg.Clock != nil,
		hold:    math.MaxInt64,
		log:     p.log.With(zap.Int("source", id)),
	}
	wm.v.Store(math.MinInt64)
	wm.max.Store(math.MinInt64)
	for _, a := range p.aggs {
		r := ring.New[parse.Trade](p.cfg.Ring, a.waiter)
		a.inputs = append(a.inputs, r)
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
	wm := f.maxTime
	if f.clocked {
		wm = f.hold
	}
	if wm != f.wm.v.Load() {
		f.wm.v.Store(wm)
	}
}

// Hold keeps the pipeline's watermark at or below t until Hold is called again:
// a source that waits for missing trades (a gap being filled) must not let klines
// close over them. Hold(math.MaxInt64) releases it. Only meaningful with
// Config.Clock, where the clock, not the sources' trade times, moves the watermark.
func (f *Feeder) Hold(t int64) { f.hold = t }

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

// validSymbol accepts what exchanges use as symbols: 1 to 32 bytes of letters
// (Binance lists some in Chinese) and digits. Anything else in a frame is junk, and
// must not become a symbol (a file name, a log field).
func validSymbol(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
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
	name = string(bytes.ToUpper([]byte(name)))
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
