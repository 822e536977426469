package fakex

import (
	"sort"
	"strconv"
)

// Symbol status in the universe.
const (
	statusTrading  uint8 = iota
	statusUnlisted       // a list= fault has not fired yet
	statusDelisted
)

// histTrade is one aggTrade kept for REST. Prices and quantities are 8-decimal
// fixed point; pd and qd are the decimals the source printed them with, so
// REST prints them back the same.
type histTrade struct {
	id, first, time int64
	price, qty      uint64
	span            uint32 // last - first
	pd, qd          uint8
	m               bool
}

// AggTrade is one aggTrade of the server's history.
type AggTrade struct {
	AggID, FirstID, LastID, TradeTime int64
	Price, Qty                        string
	BuyerMaker                        bool
}

// symbol is a traded symbol: its universe status and its bounded history.
// Guarded by Server.mu (the producer writes under Lock, REST reads under RLock).
type symbol struct {
	name   string
	stream uint32 // stream id of lower(name)@aggTrade
	status uint8
	pd, qd uint8 // decimals seen last, for exchangeInfo

	ring []histTrade
	head int // next write position
	n    int // entries held

	produced    int64 // trades the server produced (history, whether sent or withheld)
	firstID     int64 // first id produced, -1 before
	lastID      int64
	lastTradeID int64 // raw trade id ("l") of the newest trade: what the 24 h ticker reports
	lastTime    int64
	withheld    int64 // ids withheld so far
	withheldIDs []int64
	rawTrades   int64 // sum of l-f+1
}

func newSymbol(name string, stream uint32, capacity int) *symbol {
	return &symbol{name: name, stream: stream, firstID: -1, ring: make([]histTrade, 0, min(capacity, 4096)), pd: 8, qd: 8}
}

// add records t; capacity bounds the ring.
func (s *symbol) add(t histTrade, capacity int) {
	if s.firstID < 0 {
		s.firstID = t.id
	}
	s.lastID = t.id
	s.lastTradeID, s.lastTime = t.first+int64(t.span), t.time
	s.produced++
	s.rawTrades += int64(t.span) + 1
	s.pd, s.qd = t.pd, t.qd
	if len(s.ring) < capacity {
		s.ring = append(s.ring, t)
		s.n++
		s.head = len(s.ring) % capacity
		return
	}
	s.ring[s.head] = t
	s.head++
	if s.head == capacity {
		s.head = 0
	}
}

// at returns the i-th oldest entry held.
func (s *symbol) at(i int) *histTrade {
	start := s.head - s.n
	if start < 0 {
		start += len(s.ring)
	}
	j := start + i
	if j >= len(s.ring) {
		j -= len(s.ring)
	}
	return &s.ring[j]
}

// query appends to dst up to limit trades: from fromID when fromID >= 0 (empty
// when fromID is older than the oldest held: the gap cannot be filled), else
// from startTime when startTime >= 0, else the latest limit trades; endTime >= 0
// stops at trades after it.
func (s *symbol) query(dst []histTrade, fromID, startTime, endTime int64, limit int) []histTrade {
	if s.n == 0 {
		return dst
	}
	var i int
	switch {
	case fromID >= 0:
		if fromID < s.at(0).id {
			return dst
		}
		i = sort.Search(s.n, func(k int) bool { return s.at(k).id >= fromID })
	case startTime >= 0:
		i = sort.Search(s.n, func(k int) bool { return s.at(k).time >= startTime })
	case endTime >= 0:
		end := sort.Search(s.n, func(k int) bool { return s.at(k).time > endTime })
		i = max(0, end-limit)
	default:
		i = max(0, s.n-limit)
	}
	for ; i < s.n && limit > 0; i++ {
		t := s.at(i)
		if endTime >= 0 && t.time > endTime {
			break
		}
		dst = append(dst, *t)
		limit--
	}
	return dst
}

// appendFixed8 prints an 8-decimal fixed-point value with exactly digits
// decimals (dropping the extra zeros the source did not print).
func appendFixed8(dst []byte, v uint64, digits uint8) []byte {
	return appendFixed(dst, v/pow10[8-digits], int(digits))
}

// appendRESTTrade appends t in the REST aggTrades layout.
func appendRESTTrade(dst []byte, t *histTrade, spot bool) []byte {
	dst = append(dst, `{"a":`...)
	dst = strconv.AppendInt(dst, t.id, 10)
	dst = append(dst, `,"p":"`...)
	dst = appendFixed8(dst, t.price, t.pd)
	dst = append(dst, `","q":"`...)
	dst = appendFixed8(dst, t.qty, t.qd)
	dst = append(dst, `","f":`...)
	dst = strconv.AppendInt(dst, t.first, 10)
	dst = append(dst, `,"l":`...)
	dst = strconv.AppendInt(dst, t.first+int64(t.span), 10)
	dst = append(dst, `,"T":`...)
	dst = strconv.AppendInt(dst, t.time, 10)
	dst = strconv.AppendBool(append(dst, `,"m":`...), t.m)
	if spot {
		dst = append(dst, `,"M":true`...)
	}
	return append(dst, '}')
}

// parseDecimal reads a non-negative decimal string with at most 8 fractional
// digits into 8-decimal fixed point, and the number of fractional digits.
func parseDecimal(s []byte) (v uint64, digits uint8, ok bool) {
	if len(s) == 0 || len(s) > 21 {
		return 0, 0, false
	}
	seenDot := false
	n := 0
	for _, c := range s {
		switch {
		case c == '.' && !seenDot:
			seenDot = true
		case c >= '0' && c <= '9':
			if seenDot {
				if digits == 8 {
					return 0, 0, false
				}
				digits++
			}
			v = v*10 + uint64(c-'0')
			n++
		default:
			return 0, 0, false
		}
	}
	if n == 0 || (seenDot && digits == 0) || v > (1<<63)/pow10[8] {
		return 0, 0, false
	}
	return v * pow10[8-digits], digits, true
}
