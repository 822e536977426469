package api

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/ring"
	"github.com/klagg/klagg/shard"
)

// stream is one "<symbol>@kline_<interval>" stream: its subscribers, the
// klines kept for REST, and the hub's pending open-kline updates.
//
// Ownership: subs, refs and pinned change under Server.regMu (subs is read
// lock-free by the hub); recent under mu (the hub writes, REST reads);
// pending, inDirty and class are the hub goroutine's alone.
type stream struct {
	name     string // canonical: "btcusdt@kline_1m"
	symbol   string // "BTCUSDT"
	interval string
	ivIndex  int

	subs   atomic.Pointer[[]*sub]
	refs   int
	pinned bool // the hub's table points at it: never deleted

	mu     sync.Mutex
	recent []shard.Kline // by open time, at most Config.Recent

	pending []shard.Kline // open klines not sent yet (cadence), by open time
	inDirty bool
	class   *cadenceClass
}

// cadenceClass groups the streams whose updates go out on one period.
type cadenceClass struct {
	every time.Duration
	next  time.Time
	dirty []*stream
}

// event is what Publish hands to the hub.
type event = shard.Kline

// hub is the Server's fan-out goroutine: it drains the Publish ring, keeps
// each stream's recent klines, paces open-kline updates and encodes every
// frame once for all of a stream's subscribers.
type hub struct {
	s *Server

	in      *ring.Ring[event]
	waiter  *ring.Waiter
	stop    atomic.Bool
	done    chan struct{}
	classes []*cadenceClass

	byKey []*stream // symbol*len(intervals)+interval; hub only

	// spill holds klines Publish could not put on a full ring (closed ones;
	// updates are dropped and coalesce with the next); while it is non-empty
	// Publish appends there too, so order is kept.
	spillMu  sync.Mutex
	spill    []event
	spilling atomic.Bool

	scratch []byte
}

func newHub(s *Server) *hub {
	h := &hub{s: s, done: make(chan struct{})}
	h.waiter = ring.NewWaiter(ring.Config{})
	h.in = ring.New[event](ring.Config{Size: s.cfg.QueueSize}, h.waiter)
	byEvery := map[time.Duration]*cadenceClass{}
	for _, iv := range s.cfg.Intervals {
		d := s.cfg.cadence(iv)
		if byEvery[d] == nil {
			c := &cadenceClass{every: d}
			byEvery[d] = c
			h.classes = append(h.classes, c)
		}
	}
	return h
}

// publish is Server.Publish: one copy into the ring, no lock, no allocation
// unless the ring is full.
func (h *hub) publish(k *shard.Kline) {
	if !h.spilling.Load() {
		if slot := h.in.TryReserve(1); len(slot) == 1 {
			slot[0] = *k
			h.in.Publish(1)
			return
		}
	}
	h.publishSlow(k)
}

func (h *hub) publishSlow(k *shard.Kline) {
	m := &h.s.m
	if !k.Closed {
		m.updatesDropped.Inc() // the next update or the close carries newer state
		return
	}
	h.spillMu.Lock()
	if len(h.spill) >= h.s.cfg.SpillSize {
		h.spillMu.Unlock()
		m.closedLost.Inc()
		if ce := h.s.log.Check(zap.ErrorLevel, "closed kline lost: publish queue and spill list full"); ce != nil {
			ce.Write(zap.Uint32("symbol", k.Symbol), zap.Uint8("interval", k.Interval), zap.Int64("open_time", k.OpenTime))
		}
		return
	}
	h.spill = append(h.spill, *k)
	h.spilling.Store(true)
	h.spillMu.Unlock()
	m.closedSpilled.Inc()
	h.waiter.Wake()
}

// run is the hub goroutine.
func (h *hub) run() {
	defer close(h.done)
	ready := func() bool { return h.in.Ready() || h.spilling.Load() || h.stop.Load() }
	var batch []event
	for !h.stop.Load() {
		n := 0
		for {
			items := h.in.Peek()
			if len(items) == 0 {
				break
			}
			for i := range items {
				h.handle(&items[i])
			}
			n += len(items)
			h.in.Release(len(items))
		}
		if h.spilling.Load() {
			h.spillMu.Lock()
			batch, h.spill = h.spill, batch[:0]
			h.spilling.Store(false)
			h.spillMu.Unlock()
			for i := range batch {
				h.handle(&batch[i])
			}
			n += len(batch)
			clear(batch)
		}
		h.s.m.processed.Add(n)
		wait := h.flushDue(time.Now())
		if n == 0 {
			h.waiter.Wait(ready, wait)
		}
	}
}

// flushDue sends the pending updates of every class whose time has come and
// returns how long until the next one is due.
func (h *hub) flushDue(now time.Time) time.Duration {
	wait := time.Duration(-1)
	for _, c := range h.classes {
		if len(c.dirty) > 0 && !now.Before(c.next) {
			for _, st := range c.dirty {
				st.inDirty = false
				for i := range st.pending {
					h.send(st, &st.pending[i])
				}
				st.pending = st.pending[:0]
			}
			clear(c.dirty)
			c.dirty = c.dirty[:0]
		}
		if !now.Before(c.next) {
			// Align on the period: updates leave on a steady beat.
			c.next = now.Truncate(c.every).Add(c.every)
		}
		if len(c.dirty) > 0 {
			if d := c.next.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
	}
	if wait < 0 {
		return time.Second // nothing pending: wake now and then only to look at stop
	}
	return max(wait, time.Millisecond)
}

// stream returns the stream of a published kline, creating and pinning it;
// nil when k's indices are out of range.
func (h *hub) stream(k *shard.Kline) *stream {
	nIv := len(h.s.cfg.Intervals)
	if int(k.Interval) >= nIv {
		return nil
	}
	key := int(k.Symbol)*nIv + int(k.Interval)
	if key < len(h.byKey) {
		if st := h.byKey[key]; st != nil {
			return st
		}
	}
	name := h.s.cfg.Symbols.Load().Name(k.Symbol)
	if name == "" {
		return nil
	}
	st := h.s.registry(name, int(k.Interval), true)
	if key >= len(h.byKey) {
		h.byKey = slices.Grow(h.byKey, key+1-len(h.byKey))[:key+1]
	}
	h.byKey[key] = st
	for _, c := range h.classes {
		if c.every == h.s.cfg.cadence(h.s.cfg.Intervals[k.Interval]) {
			st.class = c
		}
	}
	return st
}

// handle processes one published kline.
func (h *hub) handle(k *shard.Kline) {
	st := h.stream(k)
	if st == nil {
		h.s.m.publishInvalid.Inc()
		return
	}
	if k.Mark {
		// Flag-only: a closed kline past the aggregator's correction history
		// gained flags (gap, late). If it is still among the recent klines,
		// it is corrected there and sent again as a correction.
		h.s.m.publishedMarks.Inc()
		if marked, ok := st.mark(k); ok && h.s.cfg.Corrections {
			h.send(st, &marked)
		}
		return
	}
	if k.Closed {
		h.s.m.publishedClosed.Inc()
	} else {
		h.s.m.publishedUpdates.Inc()
	}
	st.remember(k, h.s.cfg.Recent)
	if k.Closed {
		// The close supersedes a pending update of the same period.
		st.pending = slices.DeleteFunc(st.pending, func(p shard.Kline) bool { return p.OpenTime == k.OpenTime })
		if k.Flags&shard.FlagCorrected != 0 && !h.s.cfg.Corrections {
			return
		}
		h.send(st, k)
		return
	}
	if h.s.cfg.EveryChange {
		h.send(st, k)
		return
	}
	if subs := st.subs.Load(); subs == nil || len(*subs) == 0 {
		return // nobody listens: REST has it through recent
	}
	i, found := slices.BinarySearchFunc(st.pending, k.OpenTime, func(p shard.Kline, t int64) int { return cmp.Compare(p.OpenTime, t) })
	if found {
		st.pending[i] = *k
		h.s.m.updatesCoalesced.Inc()
	} else {
		st.pending = slices.Insert(st.pending, i, *k)
	}
	if !st.inDirty {
		st.inDirty = true
		st.class.dirty = append(st.class.dirty, st)
	}
}

// remember keeps k among the stream's recent klines for REST.
func (st *stream) remember(k *shard.Kline, keep int) {
	st.mu.Lock()
	i, found := slices.BinarySearchFunc(st.recent, k.OpenTime, func(p shard.Kline, t int64) int { return cmp.Compare(p.OpenTime, t) })
	switch {
	case found:
		st.recent[i] = *k
	case len(st.recent) >= keep && i == 0:
		// Older than everything kept: History has it.
	default:
		st.recent = slices.Insert(st.recent, i, *k)
		if len(st.recent) > keep {
			st.recent = slices.Delete(st.recent, 0, len(st.recent)-keep)
		}
	}
	st.mu.Unlock()
}

// mark ORs a flag-only event's flags into the recent closed kline it names
// and returns that kline, marked as a correction; false when it is not kept.
func (st *stream) mark(k *shard.Kline) (shard.Kline, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	i, found := slices.BinarySearchFunc(st.recent, k.OpenTime, func(p shard.Kline, t int64) int { return cmp.Compare(p.OpenTime, t) })
	if !found || !st.recent[i].Closed {
		return shard.Kline{}, false
	}
	st.recent[i].Flags |= k.Flags | shard.FlagCorrected
	return st.recent[i], true
}

// recentKlines appends the stream's recent klines to dst.
func (st *stream) recentKlines(dst []shard.Kline) []shard.Kline {
	st.mu.Lock()
	dst = append(dst, st.recent...)
	st.mu.Unlock()
	return dst
}

// send encodes k once per framing (raw, combined) that a subscriber of st
// needs and queues it on every subscriber.
func (h *hub) send(st *stream, k *shard.Kline) {
	subs := st.subs.Load()
	if subs == nil || len(*subs) == 0 {
		return
	}
	now := h.s.cfg.Clock()
	var raw, combined []byte
	var periodEnd int64
	if k.Closed {
		periodEnd = k.CloseTime + 1
	}
	for _, sb := range *subs {
		var f []byte
		if sb.c.combined.Load() {
			if combined == nil {
				combined = h.frame(st, k, now, true)
			}
			f = combined
		} else {
			if raw == nil {
				raw = h.frame(st, k, now, false)
			}
			f = raw
		}
		sb.c.enqueue(sb, f, k.Closed, periodEnd)
	}
	h.s.m.eventsEncoded.Inc()
}

// frame builds one complete WebSocket text frame of k's event. The frame is
// shared by every subscriber and never modified after.
func (h *hub) frame(st *stream, k *shard.Kline, now int64, combined bool) []byte {
	p := h.scratch[:0]
	if combined {
		p = append(p, `{"stream":"`...)
		p = append(p, st.name...)
		p = append(p, `","data":`...)
	}
	p = AppendKlineEvent(p, k, st.symbol, st.interval, now)
	if combined {
		p = append(p, '}')
	}
	h.scratch = p
	f := make([]byte, 0, len(p)+10)
	f = appendFrameHeader(f, opText, len(p))
	return append(f, p...)
}
