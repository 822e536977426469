package pipeline

import (
	"errors"

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
// then closes the sink. A sink error stops delivery to the sink but not the draining,
// so the aggregators never block on a dead sink.
func (p *Pipeline) runSink() error {
	var err error
	deliver := func(k *shard.Kline) {
		if err != nil {
			return
		}
		if k.Closed {
			p.stats.KlinesClosed++
		} else {
			p.stats.KlineUpdates++
		}
		err = p.sink.Kline(k)
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
			p.sinkW.Wait(ready, p.cfg.Idle)
		}
	}
	return errors.Join(err, p.sink.Close())
}
