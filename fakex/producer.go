package fakex

import (
	"bytes"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/gobwas/ws"
)

// batch is a run of frames the producer fans out at once. Every frame is
// stored in its combined form; data..dataEnd is the bare event inside.
type batch struct {
	buf     []byte
	frames  []bframe
	samples []sampled
	// stamped is the data time (ms) the server's clock was last set to while
	// making this batch, -1 before: trades of the same millisecond (a
	// thousand of them at 1M trades/s) need not read the wall clock again.
	stamped int64
}

// sampled is an aggTrade picked for Config.Sample.
type sampled struct {
	symbol string
	aggID  int64
}

type bframe struct {
	start, data, dataEnd, end int
	stream                    uint32
	agg                       bool
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.frames = b.frames[:0]
	b.samples = b.samples[:0]
	b.stamped = -1
}

// yieldEvery is how long the producer runs at most before it lets other
// goroutines have its P. Measured with klagg capacity at 2M trades/s
// (bench/RESULTS.md): every batch (0) left fakex short of the rate; 500 us
// kept the rate with p99 5.9-6.0 ms; 2 ms and 5 ms, 7.6-8.4 and 11.6-13.3 ms.
const yieldEvery = 500 * time.Microsecond

// batchMax is the most frames fanned out at once: large enough to carry many
// frames per write, small enough to keep a paced feed smooth.
const batchMax = 512

// synthesize is the producer goroutine of the synthetic feed.
func (s *Server) synthesize() {
	if !s.waitConns() {
		return
	}
	b := &batch{buf: make([]byte, 0, batchMax*256), frames: make([]bframe, 0, batchMax)}
	tick := time.NewTimer(time.Hour)
	defer tick.Stop()
	start := time.Now()
	yielded := start
	var produced int64
	for {
		select {
		case <-s.closed:
			return
		case <-s.stop:
			return
		default:
		}
		due := int64(batchMax)
		if s.cfg.Rate > 0 {
			target := int64(time.Since(start).Seconds()*s.cfg.Rate) + 1
			if lag := target - produced; lag > int64(s.cfg.Rate)+batchMax {
				produced = target - batchMax // fell behind a slow reader: do not burst
			}
			due = min(target-produced, batchMax)
			if due <= 0 {
				tick.Reset(time.Millisecond)
				select {
				case <-s.closed:
					return
				case <-tick.C:
				}
				continue
			}
		}
		b.reset()
		s.mu.Lock()
		for range due {
			s.genOne(b)
		}
		s.mu.Unlock()
		produced += due
		for _, x := range b.samples {
			s.cfg.Sample(x.symbol, x.aggID)
		}
		s.fanout(b)
		// Behind the rate, the loop makes batch after batch without
		// blocking and would keep its P for a whole preemption slice (10
		// ms) while the connections it feeds, and a daemon sharing the
		// process, wait: it lets them run every yieldEvery.
		if now := time.Now(); now.Sub(yielded) >= yieldEvery {
			runtime.Gosched()
			yielded = now
		}
	}
}

// genOne appends the next synthetic frame to b; s.mu is held.
func (s *Server) genOne(b *batch) {
	start := len(b.buf)
	b.buf = s.gen.Append(b.buf)
	lt := &s.gen.last
	s.total++
	if len(s.listings) > 0 {
		s.applyListings()
	}
	sym := s.genSyms[lt.sym]
	if lt.other || sym.status != statusTrading {
		b.buf = b.buf[:start]
		return
	}
	if lt.tradeTime != b.stamped {
		s.setTradeClock(lt.tradeTime)
		b.stamped = lt.tradeTime
	}
	t := histTrade{id: lt.aggID, first: lt.firstID, time: lt.tradeTime, price: lt.price, qty: lt.qty,
		span: uint32(lt.lastID - lt.firstID), pd: sym.pd, qd: sym.qd, m: lt.buyerMaker}
	if s.record(sym, t) {
		b.buf = b.buf[:start]
		return
	}
	end := len(b.buf)
	if s.cfg.Sample != nil && s.cfg.SampleEvery > 0 && s.total%int64(s.cfg.SampleEvery) == 0 {
		b.samples = append(b.samples, sampled{sym.name, lt.aggID})
	}
	b.frames = append(b.frames, bframe{start: start, data: start + s.genPre[lt.sym], dataEnd: end - 1, end: end,
		stream: sym.stream, agg: true})
	if len(s.bogus) > 0 {
		s.appendBogus(b, sym, start, end, lt.aggID)
	}
}

// appendBogus appends, when a bogus fault for sym is due, a copy of the frame
// b.buf[start:end] (trade id) with an aggTrade id a billion ahead; s.mu is held.
func (s *Server) appendBogus(b *batch, sym *symbol, start, end int, id int64) {
	i := slices.IndexFunc(s.bogus, func(a SymbolAt) bool { return a.Symbol == sym.name && a.After <= s.total })
	if i < 0 {
		return
	}
	s.bogus = slices.Delete(s.bogus, i, i+1)
	old := []byte(`"a":` + strconv.FormatInt(id, 10) + `,`)
	frame := bytes.Replace(b.buf[start:end], old, []byte(`"a":`+strconv.FormatInt(id+1_000_000_000, 10)+`,`), 1)
	at := len(b.buf)
	b.buf = append(b.buf, frame...)
	f := b.frames[len(b.frames)-1]
	shift := len(frame) - (end - start)
	b.frames = append(b.frames, bframe{start: at, data: at + (f.data - f.start), dataEnd: at + (f.dataEnd - f.start) + shift,
		end: len(b.buf), stream: f.stream, agg: true})
	s.fault("bogus")
}

// record adds t to sym's history and reports whether the withhold fault keeps
// it off the WebSocket; s.mu is held.
func (s *Server) record(sym *symbol, t histTrade) (withheld bool) {
	sym.add(t, s.histCap)
	f := &s.cfg.Faults
	if f.WithholdN > 0 && sym.produced > f.WithholdAfter && sym.withheld < f.WithholdN {
		sym.withheld++
		sym.withheldIDs = append(sym.withheldIDs, t.id)
		s.fault("withhold")
		return true
	}
	return false
}

// applyListings fires the list/delist faults due at s.total; s.mu is held.
func (s *Server) applyListings() {
	for len(s.listings) > 0 && s.listings[0].After <= s.total {
		l := s.listings[0]
		s.listings = s.listings[1:]
		sym := s.syms[l.Symbol]
		if l.list {
			sym.status = statusTrading
			s.fault("list")
		} else {
			sym.status = statusDelisted
			s.fault("delist")
		}
	}
}

// fanout queues the frames of b on every connection subscribed to them.
func (s *Server) fanout(b *batch) {
	if len(b.frames) == 0 {
		return
	}
	f := &s.cfg.Faults
	faulty := f.Drop > 0 || f.StallAfter > 0 || f.Malformed > 0 || f.Dup > 0 || f.Shutdown > 0
	var slow []*conn
	for _, c := range *s.conns.Load() {
		c.mu.Lock()
		if c.dead || len(c.subs) == 0 {
			c.mu.Unlock()
			continue
		}
		queued := false
		subs := c.subs
		for i := range b.frames {
			fr := &b.frames[i]
			if int(fr.stream>>6) >= len(subs) || subs[fr.stream>>6]&(1<<(fr.stream&63)) == 0 || (fr.agg && c.noAgg) {
				continue
			}
			p := b.buf[fr.data:fr.dataEnd]
			if c.combined {
				p = b.buf[fr.start:fr.end]
			}
			queued = true
			if faulty {
				if !s.queueFaulty(c, p) {
					break
				}
				continue
			}
			c.queueLocked(ws.OpText, p)
			c.pendingFrames++
		}
		over := len(c.pending) > s.cfg.QueueBytes && !c.stalled && !c.dead
		c.mu.Unlock()
		if queued {
			signal(c.wake)
		}
		if over {
			slow = append(slow, c)
		}
	}
	for _, c := range slow {
		s.waitDrain(c)
	}
}

// queueFaulty queues p on c with the per-connection faults; false when c takes
// nothing more. c.mu is held.
func (s *Server) queueFaulty(c *conn, p []byte) bool {
	f := &s.cfg.Faults
	c.count++
	n := c.count
	if f.Malformed > 0 && n%f.Malformed == 0 {
		c.queueLocked(ws.OpText, malformed(p, n/f.Malformed))
		c.pendingFrames++
		s.fault("malformed")
	}
	c.queueLocked(ws.OpText, p)
	c.pendingFrames++
	if f.Dup > 0 && n%f.Dup == 0 {
		c.queueLocked(ws.OpText, p)
		c.pendingFrames++
		s.fault("dup")
	}
	if n == f.Drop && s.fire("drop", f.DropMax) {
		c.marks = append(c.marks, mark{off: len(c.pending), kind: markDrop})
		c.dead = true
		return false
	}
	if n == f.StallAfter && s.fire("stall", f.StallMax) {
		c.marks = append(c.marks, mark{off: len(c.pending), kind: markStall, dur: f.StallFor})
		c.stalled = true
	}
	if n == f.Shutdown && s.fire("shutdown", f.ShutdownMax) {
		ev := strconv.AppendInt([]byte(`{"e":"serverShutdown","E":`), s.Clock(), 10)
		ev = append(ev, '}')
		if c.combined {
			ev = append(append([]byte(`{"stream":"!serverShutdown","data":`), ev...), '}')
		}
		c.queueLocked(ws.OpText, ev)
		c.pendingFrames++
		c.marks = append(c.marks, mark{off: len(c.pending), kind: markShutdown})
	}
	return true
}

// fire counts a fault of kind and reports whether it may fire: fewer than
// limit fired so far (limit 0: no limit).
func (s *Server) fire(kind string, limit int64) bool {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	if limit > 0 && s.stats.faults[kind] >= limit {
		return false
	}
	s.stats.faults[kind]++
	return true
}

// malformed returns a broken copy of frame p, the k-th one: truncated JSON, a
// bad number (a fraction in "T") or invalid UTF-8, in turn.
func malformed(p []byte, k int64) []byte {
	switch k % 3 {
	case 1:
		if i := bytes.Index(p, []byte(`"T":`)); i >= 0 {
			j := i + 4
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			out := append([]byte(nil), p[:j]...)
			out = append(out, ".5"...)
			return append(out, p[j:]...)
		}
	case 2:
		if i := bytes.Index(p, []byte(`"s":"`)); i >= 0 && i+5 < len(p) {
			out := append([]byte(nil), p...)
			out[i+5] = 0xff
			return out
		}
	}
	return append([]byte(nil), p[:len(p)/2]...)
}

// waitDrain blocks the producer while c's queue is over its bound, up to
// SlowTimeout; then c is dropped.
func (s *Server) waitDrain(c *conn) {
	t := time.NewTimer(s.cfg.SlowTimeout)
	defer t.Stop()
	for {
		c.mu.Lock()
		over := len(c.pending) > s.cfg.QueueBytes && !c.stalled && !c.dead
		c.mu.Unlock()
		if !over {
			return
		}
		select {
		case <-c.drained:
		case <-c.done:
			return
		case <-s.closed:
			return
		case <-t.C:
			s.stats.connsSlow.Add(1)
			c.close()
			return
		}
	}
}

// waitConns holds the feed until Config.WaitConns connections have streams;
// false when the server closed meanwhile.
func (s *Server) waitConns() bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		n := 0
		for _, c := range *s.conns.Load() {
			c.mu.Lock()
			if len(c.names) > 0 {
				n++
			}
			c.mu.Unlock()
		}
		if n >= s.cfg.WaitConns {
			return true
		}
		select {
		case <-s.subConn:
		case <-t.C:
		case <-s.closed:
			return false
		}
	}
}

// waitFlushed waits until every connection has written its queue out.
func (s *Server) waitFlushed() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		busy := false
		for _, c := range *s.conns.Load() {
			c.mu.Lock()
			if !c.dead && (len(c.pending) > 0 || c.writing) {
				busy = true
			}
			c.mu.Unlock()
		}
		if !busy {
			return
		}
		select {
		case <-s.closed:
			return
		case <-time.After(time.Millisecond):
		}
	}
}
