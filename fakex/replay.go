package fakex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/klagg/klagg/record"
)

// scanReplay opens every replay input once, failing fast on unreadable ones,
// and returns the symbols whose aggTrades they carry, in order of appearance:
// the universe exchangeInfo shows before the first frame.
func scanReplay(paths []string) ([]string, int64, error) {
	var names []string
	var first int64 // the first aggTrade's time: the clock before anything is sent
	seen := map[string]bool{}
	for _, path := range paths {
		r, err := record.Open(path)
		if err != nil {
			return nil, 0, fmt.Errorf("%w %s: %w", ErrReplay, path, err)
		}
		if r.Format() == record.FormatCSV {
			if n := r.Symbol(); !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
			for first == 0 {
				rec, err := r.Next()
				if errors.Is(err, record.ErrLineTooLong) {
					continue
				}
				if err != nil {
					break
				}
				first = csvTime(rec)
			}
			_ = r.Close()
			continue
		}
		for {
			rec, err := r.Next()
			if errors.Is(err, record.ErrLineTooLong) {
				continue
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					_ = r.Close()
					return nil, 0, fmt.Errorf("%w %s line %d: %w", ErrReplay, path, r.Line(), err)
				}
				break
			}
			if !bytes.Contains(rec, []byte(`"e":"aggTrade"`)) {
				continue
			}
			if first == 0 {
				if k := bytes.Index(rec, []byte(`"T":`)); k >= 0 {
					first = leadingInt(rec[k+4:])
				}
			}
			i := bytes.Index(rec, []byte(`"s":"`))
			if i < 0 {
				continue
			}
			rest := rec[i+5:]
			j := bytes.IndexByte(rest, '"')
			if j <= 0 {
				continue
			}
			if n := string(rest[:j]); !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		_ = r.Close()
	}
	return names, first, nil
}

// replayEvent is one decoded replay record.
type replayEvent struct {
	stream string // stream name; "" derives it from the symbol
	event  []byte // the bare event
	agg    bool
	symbol string
	trade  histTrade
}

// aggEvent declares both cases of every key that differs only in case, as
// encoding/json matches keys case-insensitively.
type aggEvent struct {
	Type      string `json:"e"`
	EventTime int64  `json:"E"`
	Symbol    string `json:"s"`
	AggID     int64  `json:"a"`
	Price     string `json:"p"`
	Qty       string `json:"q"`
	First     int64  `json:"f"`
	Last      int64  `json:"l"`
	Time      int64  `json:"T"`
	Maker     bool   `json:"m"`
	Best      bool   `json:"M"`
}

// decodeFrame reads one recorded WebSocket frame; false: skip it.
func decodeFrame(ev *replayEvent, rec []byte) bool {
	*ev = replayEvent{event: rec}
	if bytes.HasPrefix(rec, []byte(`{"stream":`)) || bytes.Contains(rec, []byte(`"data":`)) {
		var env struct {
			Stream string          `json:"stream"`
			Data   json.RawMessage `json:"data"`
		}
		if json.Unmarshal(rec, &env) == nil && env.Stream != "" && len(env.Data) > 0 {
			ev.stream, ev.event = env.Stream, env.Data
		}
	}
	if !bytes.Contains(ev.event, []byte(`"e":"aggTrade"`)) {
		return ev.stream != "" // a bare event of another stream cannot be routed
	}
	var a aggEvent
	if json.Unmarshal(ev.event, &a) != nil || a.Type != "aggTrade" || a.Symbol == "" || a.Last < a.First {
		return false
	}
	price, pd, ok1 := parseDecimal([]byte(a.Price))
	qty, qd, ok2 := parseDecimal([]byte(a.Qty))
	if !ok1 || !ok2 {
		return false
	}
	ev.agg, ev.symbol = true, a.Symbol
	ev.trade = histTrade{id: a.AggID, first: a.First, time: a.Time, price: price, qty: qty,
		span: uint32(a.Last - a.First), pd: pd, qd: qd, m: a.Maker}
	return true
}

// decodeCSV reads one data.binance.vision aggTrades row and prints it as an
// event of the market's layout into scratch; false: skip it (a header).
func decodeCSV(ev *replayEvent, row []byte, symbol string, spot bool, scratch []byte) ([]byte, bool) {
	f := bytes.Split(bytes.TrimSpace(row), []byte(","))
	if len(f) < 7 {
		return scratch, false
	}
	id, err1 := strconv.ParseInt(string(f[0]), 10, 64)
	first, err2 := strconv.ParseInt(string(f[3]), 10, 64)
	last, err3 := strconv.ParseInt(string(f[4]), 10, 64)
	t, err4 := strconv.ParseInt(string(f[5]), 10, 64)
	price, pd, ok1 := parseDecimal(f[1])
	qty, qd, ok2 := parseDecimal(f[2])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || !ok1 || !ok2 || last < first {
		return scratch, false
	}
	if t >= 1e14 { // spot files from 2025 on carry microseconds
		t /= 1000
	}
	maker := strings.EqualFold(string(f[6]), "true")
	best := len(f) < 8 || strings.EqualFold(string(bytes.TrimSpace(f[7])), "true")
	b := append(scratch[:0], `{"e":"aggTrade","E":`...)
	b = strconv.AppendInt(b, t, 10)
	if spot {
		b = append(append(append(b, `,"s":"`...), symbol...), `","a":`...)
		b = strconv.AppendInt(b, id, 10)
	} else {
		b = strconv.AppendInt(append(b, `,"a":`...), id, 10)
		b = append(append(append(b, `,"s":"`...), symbol...), '"')
	}
	b = append(append(append(b, `,"p":"`...), f[1]...), `","q":"`...)
	b = append(append(b, f[2]...), `","f":`...)
	b = strconv.AppendInt(b, first, 10)
	b = strconv.AppendInt(append(b, `,"l":`...), last, 10)
	b = strconv.AppendInt(append(b, `,"T":`...), t, 10)
	b = strconv.AppendBool(append(b, `,"m":`...), maker)
	if spot {
		b = strconv.AppendBool(append(b, `,"M":`...), best)
	}
	b = append(b, '}')
	*ev = replayEvent{event: b, agg: true, symbol: symbol,
		trade: histTrade{id: id, first: first, time: t, price: price, qty: qty, span: uint32(last - first), pd: pd, qd: qd, m: maker}}
	return b, true
}

// replay is the producer goroutine of a replay: records in file order, paced
// by trade time / Speed.
func (s *Server) replay() {
	if !s.waitConns() {
		return
	}
	b := &batch{}
	var scratch []byte
	var ev replayEvent
	t0 := int64(-1)
	var w0 time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, path := range s.cfg.Replay {
		r, err := record.Open(path)
		if err != nil {
			s.stats.replaySkipped.Add(1)
			continue
		}
		csv := r.Format() == record.FormatCSV
		for n := 0; ; n++ {
			rec, err := r.Next()
			if errors.Is(err, record.ErrLineTooLong) {
				s.stats.replaySkipped.Add(1)
				continue
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.stats.replaySkipped.Add(1)
				}
				break
			}
			var ok bool
			if csv {
				scratch, ok = decodeCSV(&ev, rec, r.Symbol(), s.spot, scratch)
				if !ok && n > 0 {
					s.stats.replaySkipped.Add(1)
				}
			} else if ok = decodeFrame(&ev, rec); !ok {
				s.stats.replaySkipped.Add(1)
			}
			if !ok {
				continue
			}
			if ev.agg && s.cfg.Speed > 0 {
				if t0 < 0 {
					t0, w0 = ev.trade.time, time.Now()
				}
				due := w0.Add(time.Duration(float64(ev.trade.time-t0) / s.cfg.Speed * float64(time.Millisecond)))
				if d := time.Until(due); d > 0 {
					s.fanout(b)
					b.reset()
					timer.Reset(d)
					select {
					case <-s.closed:
						_ = r.Close()
						return
					case <-timer.C:
					}
				}
			}
			s.emit(b, &ev)
			if len(b.frames) >= batchMax {
				s.fanout(b)
				b.reset()
				select {
				case <-s.closed:
					_ = r.Close()
					return
				default:
				}
			}
		}
		_ = r.Close()
	}
	s.fanout(b)
	s.waitFlushed()
	close(s.done)
}

// emit records a replayed event and appends its frame to b.
func (s *Server) emit(b *batch, ev *replayEvent) {
	s.mu.Lock()
	s.total++
	if len(s.listings) > 0 {
		s.applyListings()
	}
	var sid uint32
	if ev.agg {
		sym := s.addSymbol(ev.symbol)
		if sym.status != statusTrading {
			s.mu.Unlock()
			return
		}
		s.setClock(ev.trade.time)
		withheld := s.record(sym, ev.trade)
		s.mu.Unlock()
		if withheld {
			return
		}
		sid = sym.stream
		if ev.stream != "" {
			sid = s.streams.id(ev.stream)
		}
	} else {
		s.mu.Unlock()
		sid = s.streams.id(ev.stream)
	}
	stream := ev.stream
	if stream == "" {
		stream = strings.ToLower(ev.symbol) + "@aggTrade"
	}
	start := len(b.buf)
	b.buf = append(b.buf, `{"stream":"`...)
	b.buf = append(b.buf, stream...)
	b.buf = append(b.buf, `","data":`...)
	data := len(b.buf)
	b.buf = append(b.buf, ev.event...)
	dataEnd := len(b.buf)
	b.buf = append(b.buf, '}')
	b.frames = append(b.frames, bframe{start: start, data: data, dataEnd: dataEnd, end: len(b.buf), stream: sid, agg: ev.agg})
}

// csvTime is the transact_time of an aggTrades CSV row in ms (microseconds in
// spot files from 2025 on), 0 for a header or junk.
func csvTime(row []byte) int64 {
	f := bytes.Split(row, []byte(","))
	if len(f) < 6 {
		return 0
	}
	t := leadingInt(f[5])
	if t >= 1e14 {
		t /= 1000
	}
	return t
}

// leadingInt reads the decimal digits at the start of b.
func leadingInt(b []byte) int64 {
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' || v > (1<<62)/10 {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}
