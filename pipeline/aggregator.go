package pipeline

import (
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/ring"
	"github.com/klagg/klagg/shard"
)

// aggregator is one shard's goroutine: it drains the shard's input rings (one per
// source), applies trades and in-band commands to the shard's kline state and hands
// events to the sink through its output ring. Everything in it belongs to that
// goroutine, but inputs, which AddSource replaces (copy on write).
type aggregator struct {
	p         *Pipeline
	id        int
	agg       *shard.Aggregator
	waiter    *ring.Waiter
	inputs    atomic.Pointer[[]*ring.Ring[parse.Trade]]
	out       outbox
	lastWM    int64
	nextClose int64 // the watermark at which Advance closes something next
	wakes     uint64
	snap      published[shard.Counters]
	loops     uint64
	parentsAt time.Time // when the parents' updates went last
	// folding is set while a round of parents' updates is under way: a few
	// symbols' parents are folded per loop, between batches of trades.
	folding bool
}

// parentFolds is how many symbols' parents an aggregator folds per loop in
// a round of parents' updates. One symbol's 14 parents (Binance's futures
// set) take about 4 us here: 250 symbols at once held a shard's trades for
// a millisecond every ParentUpdates (bench/speed-results.md).
const parentFolds = 4

func newAggregator(p *Pipeline, id int) (*aggregator, error) {
	a := &aggregator{p: p, id: id, waiter: ring.NewWaiter(p.cfg.Ring), lastWM: math.MinInt64, nextClose: math.MinInt64}
	a.inputs.Store(&[]*ring.Ring[parse.Trade]{})
	a.out = outbox{
		r:       ring.New[shard.Kline](p.cfg.Ring, p.sinkWaiter()),
		stage:   make([]shard.Kline, 0, p.cfg.Batch),
		updates: p.cfg.Updates,
		p:       p,
		shard:   id,
	}
	agg, err := shard.New(p.cfg.Shard, &a.out)
	if err != nil {
		return nil, err
	}
	a.agg = agg
	return a, nil
}

// addInput adds the ring of a new source (the caller holds the pipeline's mu).
func (a *aggregator) addInput(r *ring.Ring[parse.Trade]) {
	in := append(append([]*ring.Ring[parse.Trade](nil), *a.inputs.Load()...), r)
	a.inputs.Store(&in)
}

func (a *aggregator) run() {
	for {
		// The watermark is read before the rings are drained: every trade at or before
		// it was published before it, so it is applied before any kline closes.
		wm := a.p.current()
		n, done := a.drain()
		if wm != math.MaxInt64 && wm > a.lastWM {
			a.agg.Advance(wm)
			a.lastWM = wm
			a.nextClose = a.agg.NextClose()
		}
		if a.p.cfg.Updates { // also retries updates the sink had no room for
			a.flushUpdates(false)
		}
		a.out.flush()
		if done {
			break
		}
		if a.loops++; n == 0 || a.loops%64 == 0 {
			c := a.agg.Counters()
			a.snap.store(&c)
		}
		switch {
		case n == 0 && (!a.folding || a.out.refused):
			a.wakes++
			a.waiter.Wait(a.ready, a.idle())
		case a.folding:
			// Between a round's folds the sink (readied onto this P when its
			// updates were published) and the sources get their turn: a round
			// run through without yielding would hold them as long as one
			// fold of every symbol at once.
			runtime.Gosched()
		}
	}
	if a.p.cfg.Clock != nil {
		// A live feed stops: klines close only as far as the clock allows, and
		// the open ones go out as updates (a store checkpoints them).
		if wm := a.p.current(); wm != math.MaxInt64 && wm > a.lastWM {
			a.agg.Advance(wm)
		}
		if a.p.cfg.Updates {
			a.flushUpdates(true)
		}
	} else {
		a.agg.Flush(a.p.final(), a.p.cfg.FlushOpen)
		if a.p.cfg.Updates { // what is still open goes out as it stands
			a.flushUpdates(true)
		}
	}
	a.out.flush()
	c := a.agg.Counters()
	a.snap.store(&c)
	a.out.r.Close()
}

// flushUpdates hands the sink the base's changed open klines, and the
// parents' every ParentUpdates (or now, with all), a few symbols per call.
func (a *aggregator) flushUpdates(all bool) {
	a.out.refused = false
	if all {
		a.agg.FlushUpdates(true)
		a.folding = false
		return
	}
	if now := time.Now(); !a.folding && now.Sub(a.parentsAt) >= a.p.cfg.ParentUpdates {
		a.agg.StartParents()
		a.folding, a.parentsAt = true, now
	}
	if !a.folding {
		a.agg.FlushUpdates(false)
		return
	}
	a.folding = !a.agg.FlushUpdatesSome(parentFolds)
}

// idle is how long the aggregator may park when it has nothing to do: without a
// clock, until a source publishes (Idle bounds it); with one, until the next
// kline can close by the clock.
func (a *aggregator) idle() time.Duration {
	d := a.idleClock()
	if a.p.cfg.Updates && a.agg.Pending() {
		d = min(d, max(a.p.cfg.ParentUpdates-time.Since(a.parentsAt), time.Millisecond))
		if a.folding { // the sink refused some: retry soon
			d = time.Millisecond
		}
	}
	return d
}

func (a *aggregator) idleClock() time.Duration {
	if a.p.cfg.Clock == nil {
		return a.p.cfg.Idle
	}
	now := a.p.cfg.Clock()
	if now == math.MinInt64 || a.nextClose == math.MinInt64 {
		return 10 * time.Millisecond // not synced yet, or nothing seen yet
	}
	d := time.Duration(a.nextClose-now) * time.Millisecond
	return min(max(d, 10*time.Millisecond), time.Second)
}

// drain applies everything the input rings hold now; done reports that every input
// ring is closed and empty and no source can be added any more.
func (a *aggregator) drain() (n int, done bool) {
	done = a.p.isEnding()
	for _, r := range *a.inputs.Load() {
		for {
			items := r.Peek()
			if len(items) == 0 {
				break
			}
			for i := range items {
				a.agg.Apply(&items[i])
			}
			r.Release(len(items))
			n += len(items)
		}
		if !r.Done() {
			done = false
		}
	}
	return n, done
}

func (a *aggregator) ready() bool {
	done := a.p.isEnding()
	for _, r := range *a.inputs.Load() {
		if len(r.Peek()) > 0 {
			return true
		}
		done = done && r.Done()
	}
	if done {
		return true
	}
	wm := a.p.current()
	return wm != math.MaxInt64 && wm > a.lastWM && wm >= a.nextClose
}

// outbox is the shard.Emitter of one aggregator: it stages events and publishes them to
// the output ring in batches. Closed klines are never dropped (Write blocks when the
// sink lags: backpressure); updates are offered without blocking and stay dirty in the
// aggregator when there is no room.
type outbox struct {
	r       *ring.Ring[shard.Kline]
	stage   []shard.Kline
	updates bool
	p       *Pipeline
	shard   int
	dropped uint64 // trades the aggregator could not apply (too late)
	refused bool   // Update refused a kline since flushUpdates began
}

func (o *outbox) Closed(k *shard.Kline) {
	o.stage = append(o.stage, *k)
	if len(o.stage) == cap(o.stage) {
		o.flush()
	}
}

func (o *outbox) Update(k *shard.Kline) bool {
	if !o.updates {
		return true
	}
	if len(o.stage) == cap(o.stage) && !o.tryFlush() {
		o.refused = true
		return false
	}
	o.stage = append(o.stage, *k)
	return true
}

// Dropped logs (sampled) a trade the shard could not apply; the shard counts it
// and flags its kline.
func (o *outbox) Dropped(t *parse.Trade, why error) {
	o.dropped++
	o.p.logDropped(t, why)
}

func (o *outbox) flush() {
	if len(o.stage) > 0 {
		o.r.Write(o.stage)
		o.stage = o.stage[:0]
	}
}

// tryFlush publishes what fits without waiting and reports whether the stage emptied.
func (o *outbox) tryFlush() bool {
	for len(o.stage) > 0 {
		slots := o.r.TryReserve(len(o.stage))
		if len(slots) == 0 {
			return false
		}
		n := copy(slots, o.stage)
		o.r.Publish(n)
		o.stage = o.stage[:copy(o.stage, o.stage[n:])]
	}
	return true
}
