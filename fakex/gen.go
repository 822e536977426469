package fakex

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// GenConfig describes a synthetic Binance aggTrade feed. The zero value works:
// NewGenerator fills every zero field from DefaultGenConfig except Combined,
// whose zero value (bare frames, no envelope) is meaningful.
type GenConfig struct {
	// Market is "futures" (USD-M layout, the default) or "spot" (the frame
	// carries "M":true after "m" and every number prints with 8 decimals).
	Market string
	// Symbols is the number of symbols, named "S0000USDT", "S0001USDT", ...
	Symbols int
	// Seed makes the feed deterministic: one seed, one byte stream.
	Seed int64
	// Start is the first trade time, Unix milliseconds.
	Start int64
	// Rate is trades per second of data time: trade times advance by 1e3/Rate
	// ms on average (exponential gaps), whatever the wall clock does.
	Rate float64
	// Combined wraps each frame in the combined-stream envelope
	// {"stream":"s0000usdt@aggTrade","data":{...}}.
	Combined bool
	// OtherEvery, when > 0, makes every OtherEvery-th frame a bookTicker or
	// depthUpdate frame, which a consumer must recognise and skip.
	OtherEvery int
}

// DefaultGenConfig is 500 futures symbols at 100,000 trades per second of data
// time from Monday 2026-01-05T00:00:00Z, in combined-stream envelopes.
func DefaultGenConfig() GenConfig {
	return GenConfig{
		Market:   "futures",
		Symbols:  500,
		Seed:     1,
		Start:    time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).UnixMilli(),
		Rate:     100_000,
		Combined: true,
	}
}

// genLevel is one price level: the price a symbol starts near, how many
// decimals its tick has (futures print exactly that many), and the decimals of
// its quantity step.
type genLevel struct {
	price       float64
	priceDigits int
	qtyDigits   int
}

// genLevels spreads symbols over price levels like a real exchange: BTC-like,
// ETH-like, mid caps and sub-cent coins.
var genLevels = [...]genLevel{
	{30000, 1, 3},
	{2000, 2, 3},
	{150, 2, 2},
	{20, 3, 1},
	{1.5, 4, 0},
	{0.25, 5, 0},
	{0.012, 6, 0},
}

var pow10 = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// genSymbol is the running state of one symbol.
type genSymbol struct {
	name        string // "S0000USDT"
	stream      string // "s0000usdt"
	price       int64  // current price in ticks, always >= 1
	priceDigits int
	qtyDigits   int
	aggID       int64 // next "a"
	tradeID     int64 // next "f"
	index       int   // position in Generator.syms
}

// Generator produces a deterministic synthetic Binance feed. It is not safe for
// concurrent use: one goroutine owns it.
type Generator struct {
	syms       []genSymbol
	names      []string
	rng        *rand.Rand
	cdf        []uint64 // cdf[i] = P(symbol <= i) scaled to 2^64, Zipf(s=1.1)
	start      int64
	clock      float64 // data time since start, ms
	meanGap    float64 // ms
	frame      uint64  // frames appended so far
	otherEvery uint64
	updateID   int64
	spot       bool
	combined   bool
	last       genAgg // what the last Append produced, for the Server
}

// genAgg describes the frame Append produced last, so the Server can keep its
// history without decoding its own frames.
type genAgg struct {
	sym        int    // index of the symbol
	other      bool   // a bookTicker or depthUpdate frame, not an aggTrade
	aggID      int64  // "a"
	firstID    int64  // "f"
	lastID     int64  // "l"
	tradeTime  int64  // "T"
	price      uint64 // 8-decimal fixed point
	qty        uint64 // 8-decimal fixed point
	buyerMaker bool
}

// NewGenerator returns a generator for cfg; zero fields take their defaults. It
// panics on an unknown Market or a negative Rate, which are programming errors.
func NewGenerator(cfg GenConfig) *Generator {
	def := DefaultGenConfig()
	if cfg.Market == "" {
		cfg.Market = def.Market
	}
	if cfg.Market != "futures" && cfg.Market != "spot" {
		panic(fmt.Sprintf("bench: GenConfig.Market must be \"futures\" or \"spot\", got %q", cfg.Market))
	}
	if cfg.Symbols <= 0 {
		cfg.Symbols = def.Symbols
	}
	if cfg.Start == 0 {
		cfg.Start = def.Start
	}
	if cfg.Rate == 0 {
		cfg.Rate = def.Rate
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		panic(fmt.Sprintf("bench: GenConfig.Rate must be positive, got %v", cfg.Rate))
	}
	seed := uint64(cfg.Seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &Generator{
		syms:       make([]genSymbol, cfg.Symbols),
		names:      make([]string, cfg.Symbols),
		rng:        rng,
		start:      cfg.Start,
		meanGap:    1e3 / cfg.Rate,
		spot:       cfg.Market == "spot",
		combined:   cfg.Combined,
		otherEvery: uint64(max(0, cfg.OtherEvery)),
		updateID:   1_000_000_000 + rng.Int64N(1_000_000_000),
	}
	g.cdf = zipfCDF(cfg.Symbols, 1.1)
	for i := range g.syms {
		lvl := genLevels[i%len(genLevels)]
		name := fmt.Sprintf("S%04dUSDT", i)
		ticks := lvl.price * float64(pow10[lvl.priceDigits]) * (0.5 + rng.Float64())
		g.syms[i] = genSymbol{
			name:        name,
			stream:      strings.ToLower(name),
			price:       max(1, int64(ticks)),
			priceDigits: lvl.priceDigits,
			qtyDigits:   lvl.qtyDigits,
			aggID:       1_000_000 + rng.Int64N(100_000_000),
			tradeID:     10_000_000 + rng.Int64N(1_000_000_000),
			index:       i,
		}
		g.names[i] = name
	}
	return g
}

// Symbols returns the symbol names, index i being the symbol "S%04dUSDT" of i.
// The slice is a copy the caller may keep.
func (g *Generator) Symbols() []string {
	return append([]string(nil), g.names...)
}

// zipfCDF tabulates P(k) proportional to (k+1)^-s for k < n: a few hot
// symbols take most of the flow and a long tail trickles. It gives the same
// law as rand.Zipf(s, v=1) but a table lookup costs a third of its Exp and Log.
func zipfCDF(n int, s float64) []uint64 {
	weights := make([]float64, n)
	total := 0.0
	for k := range weights {
		weights[k] = math.Pow(float64(k+1), -s)
		total += weights[k]
	}
	cdf := make([]uint64, n)
	acc := 0.0
	for k, w := range weights {
		acc += w
		if p := acc / total; p < 1 {
			cdf[k] = uint64(p * (1 << 64))
		} else {
			cdf[k] = math.MaxUint64
		}
	}
	cdf[n-1] = math.MaxUint64
	return cdf
}

// pick draws a symbol from the Zipf law by binary search in the CDF.
func (g *Generator) pick() *genSymbol {
	u := g.rng.Uint64()
	lo, hi := 0, len(g.cdf)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if g.cdf[mid] < u {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return &g.syms[lo]
}

// Append appends the next frame to dst, without a trailing newline, in exactly
// Binance's field order, and returns the extended slice. It allocates nothing
// once dst has room for a frame (about 250 bytes).
func (g *Generator) Append(dst []byte) []byte {
	g.frame++
	s := g.pick()
	r := g.rng.Uint64()
	if g.otherEvery > 0 && g.frame%g.otherEvery == 0 {
		g.last.sym = s.index
		g.last.other = true
		return g.appendOther(dst, s, r)
	}
	// Random walk: half the trades keep the price, the rest move 1..3 ticks.
	if move := r & 3; move != 0 {
		step := int64(1 + (r>>2)%3)
		switch {
		case move == 1 || s.price <= step:
			s.price += step
		case move == 2:
			s.price -= step
		}
	}
	// Quantity: heavy-tailed number of lot steps, 1 .. 2^11.
	qty := 1 + (r>>8)%(uint64(1)<<((r>>4)%12))
	raw := int64(1 + (r>>32)%3) // raw trades in this aggTrade (1..3)
	buyerMaker := r>>40&1 == 1
	g.clock += g.meanGap * g.rng.ExpFloat64()
	tradeTime := g.start + int64(g.clock)
	eventTime := tradeTime + int64(r>>44&7)

	if g.combined {
		dst = append(dst, `{"stream":"`...)
		dst = append(dst, s.stream...)
		dst = append(dst, `@aggTrade","data":`...)
	}
	dst = append(dst, `{"e":"aggTrade","E":`...)
	dst = strconv.AppendInt(dst, eventTime, 10)
	if g.spot {
		dst = append(dst, `,"s":"`...)
		dst = append(dst, s.name...)
		dst = append(dst, `","a":`...)
		dst = strconv.AppendInt(dst, s.aggID, 10)
		dst = append(dst, `,"p":"`...)
	} else {
		dst = append(dst, `,"a":`...)
		dst = strconv.AppendInt(dst, s.aggID, 10)
		dst = append(dst, `,"s":"`...)
		dst = append(dst, s.name...)
		dst = append(dst, `","p":"`...)
	}
	dst = g.appendPrice(dst, s, s.price)
	dst = append(dst, `","q":"`...)
	dst = g.appendQty(dst, s, qty)
	dst = append(dst, `","f":`...)
	dst = strconv.AppendInt(dst, s.tradeID, 10)
	dst = append(dst, `,"l":`...)
	dst = strconv.AppendInt(dst, s.tradeID+raw-1, 10)
	dst = append(dst, `,"T":`...)
	dst = strconv.AppendInt(dst, tradeTime, 10)
	if buyerMaker {
		dst = append(dst, `,"m":true`...)
	} else {
		dst = append(dst, `,"m":false`...)
	}
	if g.spot {
		dst = append(dst, `,"M":true`...)
	}
	dst = append(dst, '}')
	if g.combined {
		dst = append(dst, '}')
	}
	g.last = genAgg{
		sym:        s.index,
		aggID:      s.aggID,
		firstID:    s.tradeID,
		lastID:     s.tradeID + raw - 1,
		tradeTime:  tradeTime,
		price:      uint64(s.price) * pow10[8-s.priceDigits],
		qty:        qty * pow10[8-s.qtyDigits],
		buyerMaker: buyerMaker,
	}
	s.aggID++
	s.tradeID += raw
	return dst
}

// digits returns the price and quantity decimals symbol i prints with.
func (g *Generator) digits(i int) (price, qty int) {
	if g.spot {
		return 8, 8
	}
	return g.syms[i].priceDigits, g.syms[i].qtyDigits
}

// appendOther appends a bookTicker or depthUpdate frame for s at the current
// data time; it does not advance the clock.
func (g *Generator) appendOther(dst []byte, s *genSymbol, r uint64) []byte {
	tradeTime := g.start + int64(g.clock)
	eventTime := tradeTime + int64(r>>44&7)
	bid, ask := s.price, s.price+1
	bidQty, askQty := 1+(r>>8)%5000, 1+(r>>20)%5000
	g.updateID += int64(1 + r%7)
	if r>>60&1 == 0 {
		if g.combined {
			dst = append(dst, `{"stream":"`...)
			dst = append(dst, s.stream...)
			dst = append(dst, `@bookTicker","data":`...)
		}
		if g.spot {
			dst = append(dst, `{"u":`...) // spot bookTicker carries no "e", "E" or "T"
		} else {
			dst = append(dst, `{"e":"bookTicker","u":`...)
		}
		dst = strconv.AppendInt(dst, g.updateID, 10)
		dst = append(dst, `,"s":"`...)
		dst = append(dst, s.name...)
		dst = append(dst, `","b":"`...)
		dst = g.appendPrice(dst, s, bid)
		dst = append(dst, `","B":"`...)
		dst = g.appendQty(dst, s, bidQty)
		dst = append(dst, `","a":"`...)
		dst = g.appendPrice(dst, s, ask)
		dst = append(dst, `","A":"`...)
		dst = g.appendQty(dst, s, askQty)
		dst = append(dst, '"')
		if !g.spot {
			dst = append(dst, `,"T":`...)
			dst = strconv.AppendInt(dst, tradeTime, 10)
			dst = append(dst, `,"E":`...)
			dst = strconv.AppendInt(dst, eventTime, 10)
		}
		dst = append(dst, '}')
	} else {
		if g.combined {
			dst = append(dst, `{"stream":"`...)
			dst = append(dst, s.stream...)
			dst = append(dst, `@depth@100ms","data":`...)
		}
		dst = append(dst, `{"e":"depthUpdate","E":`...)
		dst = strconv.AppendInt(dst, eventTime, 10)
		if !g.spot {
			dst = append(dst, `,"T":`...)
			dst = strconv.AppendInt(dst, tradeTime, 10)
		}
		dst = append(dst, `,"s":"`...)
		dst = append(dst, s.name...)
		dst = append(dst, `","U":`...)
		dst = strconv.AppendInt(dst, g.updateID-3, 10)
		dst = append(dst, `,"u":`...)
		dst = strconv.AppendInt(dst, g.updateID, 10)
		if !g.spot {
			dst = append(dst, `,"pu":`...)
			dst = strconv.AppendInt(dst, g.updateID-4, 10)
		}
		dst = append(dst, `,"b":[["`...)
		dst = g.appendPrice(dst, s, bid)
		dst = append(dst, `","`...)
		dst = g.appendQty(dst, s, bidQty)
		dst = append(dst, `"]],"a":[["`...)
		dst = g.appendPrice(dst, s, ask)
		dst = append(dst, `","`...)
		dst = g.appendQty(dst, s, askQty)
		dst = append(dst, `"]]}`...)
	}
	if g.combined {
		dst = append(dst, '}')
	}
	return dst
}

// appendPrice prints ticks of s: futures with exactly the symbol's tick
// decimals ("1.01100"), spot with 8 ("0.35280000"), as Binance does.
func (g *Generator) appendPrice(dst []byte, s *genSymbol, ticks int64) []byte {
	if g.spot {
		return appendFixed(dst, uint64(ticks)*pow10[8-s.priceDigits], 8)
	}
	return appendFixed(dst, uint64(ticks), s.priceDigits)
}

// appendQty prints a quantity of lot steps like appendPrice.
func (g *Generator) appendQty(dst []byte, s *genSymbol, steps uint64) []byte {
	if g.spot {
		return appendFixed(dst, steps*pow10[8-s.qtyDigits], 8)
	}
	return appendFixed(dst, steps, s.qtyDigits)
}

// appendFixed appends v / 10^digits with exactly digits fractional digits.
func appendFixed(dst []byte, v uint64, digits int) []byte {
	if digits == 0 {
		return strconv.AppendUint(dst, v, 10)
	}
	p := pow10[digits]
	dst = strconv.AppendUint(dst, v/p, 10)
	frac := v % p
	var buf [9]byte
	buf[0] = '.'
	for i := digits; i >= 1; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	return append(dst, buf[:digits+1]...)
}

// Frames returns the next n frames, sharing one backing buffer; each frame's
// capacity ends at its length, so appending to one never overwrites the next.
func (g *Generator) Frames(n int) [][]byte {
	buf := make([]byte, 0, n*230)
	ends := make([]int, n)
	for i := range n {
		buf = g.Append(buf)
		ends[i] = len(buf)
	}
	frames := make([][]byte, n)
	begin := 0
	for i, end := range ends {
		frames[i] = buf[begin:end:end]
		begin = end
	}
	return frames
}
