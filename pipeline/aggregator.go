package pipeline

import (
	"math"

	"github.com/Workiva/go-datastructures/queue"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/ring"
	"github.com/klagg/klagg/shard"
)

// aggregator is one shard's goroutine: it drains the shard's input rings (one per
// source), applies trades to the shard's kline state and hands events to the sink
// through its output ring. Everything in it belongs to that goroutine.
type aggregator struct {
	p      *Pipeline
	id     int
	agg    *shard.Aggregator
	waiter *ring.Waiter
	inputs []*ring.Ring[parse.Trade]
	out    outbox
	lastWM int64
	wakes  uint64
	// ctl carries rare commands from other goroutines (delistings, unfillable
	// gaps). Workiva's lock-free MPMC ring buffer fits: many writers, one reader,
	// and a Len check costs the hot loop one atomic load.
	ctl *queue.RingBuffer
}

type controlOp uint8

const (
	opRetire controlOp = iota + 1
	opMarkGap
)

// control is one command for an aggregator.
type control struct {
	op       controlOp
	symbol   uint32
	from, to int64
}

// command queues c for the aggregator and wakes it. It blocks only if 1024
// commands wait, which would mean the aggregator is stuck.
func (a *aggregator) command(c control) {
	if err := a.ctl.Put(c); err != nil {
		return // disposed: the pipeline has stopped
	}
	a.waiter.Wake()
}

// commands applies the queued commands.
func (a *aggregator) commands() {
	for a.ctl.Len() > 0 {
		v, err := a.ctl.Get()
		if err != nil {
			return
		}
		c := v.(control)
		switch c.op {
		case opRetire:
			a.agg.Retire(c.symbol)
		case opMarkGap:
			a.agg.MarkGap(c.symbol, c.from, c.to)
		}
	}
}

func newAggregator(p *Pipeline, id int) (*aggregator, error) {
	a := &aggregator{p: p, id: id, waiter: ring.NewWaiter(p.cfg.Ring), lastWM: math.MinInt64, ctl: queue.NewRingBuffer(1024)}
	a.out = outbox{
		r:       ring.New[shard.Kline](p.cfg.Ring, p.sinkWaiter()),
		stage:   make([]shard.Kline, 0, p.cfg.Batch),
		updates: p.cfg.Updates,
	}
	agg, err := shard.New(p.cfg.Shard, &a.out)
	if err != nil {
		return nil, err
	}
	a.agg = agg
	return a, nil
}

func (a *aggregator) run() {
	for {
		// The watermark is read before the rings are drained: every trade at or before
		// it was published before it, so it is applied before any kline closes.
		wm := a.p.current()
		n, done := a.drain()
		if a.ctl.Len() > 0 {
			a.commands()
		}
		if wm != math.MaxInt64 && wm > a.lastWM {
			a.agg.Advance(wm)
			a.lastWM = wm
		}
		if a.p.cfg.Updates { // also retries updates the sink had no room for
			a.agg.FlushUpdates()
		}
		a.out.flush()
		if done {
			break
		}
		if n == 0 {
			a.wakes++
			a.waiter.Wait(a.ready, a.p.cfg.Idle)
		}
	}
	a.commands()
	a.ctl.Dispose()
	a.agg.Flush(a.p.final(), a.p.cfg.FlushOpen)
	a.out.flush()
	a.out.r.Close()
}

// drain applies everything the input rings hold now; done reports that every input
// ring is closed and empty.
func (a *aggregator) drain() (n int, done bool) {
	done = true
	for _, r := range a.inputs {
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
	done := true
	for _, r := range a.inputs {
		if len(r.Peek()) > 0 {
			return true
		}
		done = done && r.Done()
	}
	if done || a.ctl.Len() > 0 {
		return true
	}
	wm := a.p.current()
	return wm > a.lastWM && wm != math.MaxInt64
}

// outbox is the shard.Emitter of one aggregator: it stages events and publishes them to
// the output ring in batches. Closed klines are never dropped (Write blocks when the
// sink lags: backpressure); updates are offered without blocking and stay dirty in the
// aggregator when there is no room.
type outbox struct {
	r       *ring.Ring[shard.Kline]
	stage   []shard.Kline
	updates bool
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
		return false
	}
	o.stage = append(o.stage, *k)
	return true
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
