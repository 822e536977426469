package pipeline

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/klagg/klagg/ring"
	"github.com/klagg/klagg/shard"
)

func (p *Pipeline) sinkWaiter() *ring.Waiter {
	if p.sinkW == nil {
		p.sinkW = ring.NewWaiter(p.cfg.Ring)
	}
	return p.sinkW
}

// runSink drains every aggregator's output ring into the sink until all are closed,
// then closes the sink. A sink error stops the pipeline (stop cancels the sources)
// and delivery to the sink, but not the draining, so the aggregators never block on
// a dead sink.
func (p *Pipeline) runSink(stop func()) error {
	var err error
	deliver := func(k *shard.Kline) {
		if err != nil {
			p.stats.KlinesUndelivered++
			return
		}
		switch {
		case k.Mark:
			p.stats.KlineMarks++
		case k.Closed:
			p.stats.KlinesClosed++
		default:
			p.stats.KlineUpdates++
		}
		if err = p.sink.Kline(k); err != nil {
			err = fmt.Errorf("cannot write klines: %w", err)
			p.log.Error("the sink failed; stopping", zap.Error(err))
			stop()
		}
	}
	ready := func() bool {
		done := true
		for _, a := range p.aggs {
			if len(a.out.r.Peek()) > 0 {
				return true
			}
			done = done && a.out.r.Done()
		}
		return done
	}
	for {
		n := 0
		done := true
		for _, a := range p.aggs {
			r := a.out.r
			for {
				items := r.Peek()
				if len(items) == 0 {
					break
				}
				for i := range items {
					deliver(&items[i])
				}
				r.Release(len(items))
				n += len(items)
			}
			done = done && r.Done()
		}
		if done {
			break
		}
		if n == 0 {
			p.sinkSnap.store(&sinkSnap{p.stats.KlinesClosed, p.stats.KlineUpdates, p.stats.KlineMarks, p.stats.KlinesUndelivered})
			// Publish and Close wake the sink: no timeout needed, and none costs
			// an idle daemon a wake-up.
			p.sinkW.Wait(ready, 0)
		}
	}
	return errors.Join(err, p.sink.Close())
}
