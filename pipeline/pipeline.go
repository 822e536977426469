package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/ring"
	"github.com/klagg/klagg/shard"
)

// Config configures a Pipeline. The zero value is not usable; start from DefaultConfig.
type Config struct {
	Shards int          // aggregator goroutines; default 2
	Batch  int          // trades a source stages per shard before it publishes; default 256
	Ring   ring.Config  // every input and output ring
	Parse  parse.Config // every source's decoder
	Shard  shard.Config // every aggregator

	// Updates turns on running (open) kline updates to the sink. Closed klines always flow.
	Updates bool
	// ParentUpdates, with Updates, is how often the running klines of the
	// intervals folded from others (all but the base: 3m to 1M from 1m) go to
	// the sink; the base's go after every batch of trades. Folding an open
	// period costs more than a trade, so it is done at the pace a chart or a
	// store consumes it. Default 250ms.
	ParentUpdates time.Duration
	// FlushOpen emits the klines still open at the end of the input as closed.
	FlushOpen bool
	// LearnSymbols adds symbols the table does not know yet as they appear (replay of
	// recordings). When false an unknown symbol is an error, counted and dropped.
	LearnSymbols bool
	// PinSources locks each source goroutine to an OS thread; CPUs, when not empty,
	// also binds source i to CPU CPUs[i%len(CPUs)] (Linux only). Off by default:
	// on this 2-core machine a locked goroutine costs a thread hand-off at every
	// wake-up, which measured p50 latency 70-170 us pinned against 2-3 us not
	// (bench/RESULTS.md); pin on machines with cores to spare for I/O.
	PinSources bool
	CPUs       []int
	// Idle is the longest an idle aggregator parks before it looks at the
	// watermark again; with Clock it sleeps until the next kline can close.
	Idle time.Duration
	// Clock, when set, is the exchange's current time in Unix milliseconds (live
	// feeds). Sources then publish their progress (Feeder.Progress: the exchange
	// time up to which they handed everything over), so quiet symbols' klines
	// close too, and a source stalled by backpressure delays closing instead of
	// turning trades into corrections; the clock bounds the watermark from above.
	// A source waiting for a symbol's missing trades holds that symbol alone
	// (shard.OpHold). At the end of a clocked run open klines are not closed
	// (they are emitted as updates, with Updates). Without a clock (replay) the
	// watermark is the sources' largest trade time.
	Clock func() int64
}

// DefaultConfig returns the configuration used by `klagg replay` and the benchmarks.
func DefaultConfig() Config {
	rc := ring.DefaultConfig()
	// Consumers keep yielding for 300 us before they park: measured here (klagg
	// bench, 100k trades/s, 2 cores), a park and wake-up costs tens of
	// microseconds per hop; p99 hand-off to kline update was ~240 us parking at
	// once, ~200 us yielding 100 us, 18-82 us yielding 300 us. An idle daemon
	// still parks, so it burns no core (bench/RESULTS.md).
	rc.YieldFor = 300 * time.Microsecond
	return Config{
		Shards: 2,
		Batch:  256,
		Ring:   rc,
		Parse:  parse.DefaultConfig(),
		Shard:  shard.DefaultConfig(),
		Idle:   20 * time.Millisecond,

		ParentUpdates: 250 * time.Millisecond,
	}
}

// Source produces frames or decoded trades for one Feeder. Run is called on the
// source's own goroutine and returns when its input is exhausted or ctx is done.
type Source interface {
	Run(ctx context.Context, f *Feeder) error
}

// Sink receives kline events on the sink goroutine: closed klines (k.Closed), corrected
// ones (shard.FlagCorrected), flag-only marks of closed klines (k.Mark) and, with
// Config.Updates, running updates. k is valid only during the call. An error stops the
// pipeline: the sources are cancelled, what they handed over is drained (and no longer
// delivered), and Run returns the error.
type Sink interface {
	Kline(k *shard.Kline) error
	Close() error
}

// Pipeline runs sources, aggregators and a sink. It is used once: New, then Run.
type Pipeline struct {
	cfg     Config
	symbols *parse.SymbolTable
	sources []Source
	sink    Sink
	log     *zap.Logger

	aggs  []*aggregator
	sinkW *ring.Waiter

	// Sources added while running (AddSource) join feeders and wms; they are
	// read by aggregators through atomic pointers (copy on write).
	mu      sync.Mutex
	feeders atomic.Pointer[[]*Feeder]
	wms     atomic.Pointer[[]*watermark]
	ctx     context.Context // Run's, for added sources; nil before Run
	running int             // sources running
	ending  atomic.Bool     // every source returned: no more may be added (set under mu)
	ended   chan struct{}   // closed when ending is set
	errs    []error

	stats    Stats
	sinkSnap published[sinkSnap]
}

// New builds a pipeline; symbols may be shared with other components (new listings are
// added to it while running).
func New(cfg Config, symbols *parse.SymbolTable, sources []Source, sink Sink, log *zap.Logger) (*Pipeline, error) {
	if cfg.Shards < 1 || cfg.Shards > 1024 {
		return nil, fmt.Errorf("cannot build pipeline: %d shards (want 1..1024)", cfg.Shards)
	}
	if cfg.Batch < 1 {
		cfg.Batch = 1
	}
	if len(sources) == 0 {
		return nil, errors.New("cannot build pipeline: no sources")
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pipeline{cfg: cfg, symbols: symbols, sources: sources, sink: sink, log: log}
	p.feeders.Store(&[]*Feeder{})
	p.wms.Store(&[]*watermark{})
	for s := 0; s < cfg.Shards; s++ {
		a, err := newAggregator(p, s)
		if err != nil {
			return nil, err
		}
		p.aggs = append(p.aggs, a)
	}
	for range sources {
		p.addFeeder()
	}
	return p, nil
}

// addFeeder makes the feeder of the next source, with its rings and watermark.
// Callers hold p.mu or run before Run.
func (p *Pipeline) addFeeder() *Feeder {
	wm := new(watermark)
	feeders := *p.feeders.Load()
	f := newFeeder(p, len(feeders), wm)
	wms := append(append([]*watermark(nil), *p.wms.Load()...), wm)
	p.wms.Store(&wms)
	feeders = append(append([]*Feeder(nil), feeders...), f)
	p.feeders.Store(&feeders)
	return f
}

// AddSource starts one more source while the pipeline runs (a live feed that
// needs another connection). It fails once the pipeline is stopping. Any
// goroutine may call it.
func (p *Pipeline) AddSource(src Source) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil || p.ending.Load() {
		return errors.New("cannot add a source: the pipeline is not running")
	}
	f := p.addFeeder()
	p.sources = append(p.sources, src)
	p.errs = append(p.errs, nil)
	p.startSource(p.ctx, len(p.sources)-1, src, f)
	return nil
}

// startSource runs src on its own goroutine; callers hold p.mu.
func (p *Pipeline) startSource(ctx context.Context, i int, src Source, f *Feeder) {
	p.running++
	go func() {
		defer func() {
			p.mu.Lock()
			if p.running--; p.running == 0 {
				p.ending.Store(true)
				close(p.ended)
				// The last ring closed before ending was set: an aggregator
				// woken by that Close may have found the pipeline not yet
				// ending and parked again (forever, with Idle 0).
				for _, a := range p.aggs {
					a.waiter.Wake()
				}
			}
			p.mu.Unlock()
		}()
		if p.cfg.PinSources {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if len(p.cfg.CPUs) > 0 {
				if err := pinCPU(p.cfg.CPUs[i%len(p.cfg.CPUs)]); err != nil {
					p.log.Warn("cannot pin source to CPU", zap.Int("source", i), zap.Error(err))
				}
			}
		}
		err := src.Run(ctx, f)
		f.finish()
		if err != nil && !errors.Is(err, context.Canceled) {
			p.mu.Lock()
			p.errs[i] = fmt.Errorf("source %d: %w", i, err)
			p.mu.Unlock()
		}
	}()
}

// Symbols returns the symbol table the pipeline decodes with.
func (p *Pipeline) Symbols() *parse.SymbolTable { return p.symbols }

// Run starts every stage and returns when all sources have returned and every event
// has reached the sink, or with the first error. Cancelling ctx stops the sources;
// what they handed over is still drained and flushed.
func (p *Pipeline) Run(ctx context.Context) error {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup

	sinkDone := make(chan error, 1)
	go func() { sinkDone <- p.runSink(cancel) }()

	for _, a := range p.aggs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run()
		}()
	}
	p.mu.Lock()
	p.ctx = ctx
	p.ended = make(chan struct{})
	p.errs = make([]error, len(p.sources))
	feeders := *p.feeders.Load()
	for i, src := range p.sources {
		p.startSource(ctx, i, src, feeders[i])
	}
	p.mu.Unlock()
	// Sources may be added until every running one has returned; then no more.
	<-p.ended
	wg.Wait()
	sinkErr := <-sinkDone
	p.collect(time.Since(start))
	p.mu.Lock()
	errs := append(p.errs, sinkErr)
	p.mu.Unlock()
	return errors.Join(errs...)
}

// Restore gives symbol the kline state a store saved (see shard.Aggregator.Restore),
// on the shard that owns it. Call it before Run only.
func (p *Pipeline) Restore(symbol uint32, saved []shard.Saved) error {
	p.mu.Lock()
	running := p.ctx != nil
	p.mu.Unlock()
	if running {
		return errors.New("cannot restore klines: the pipeline is running")
	}
	return p.aggs[shardOf(symbol, len(p.aggs))].agg.Restore(symbol, saved)
}

// Routed is the number of trades the sources have handed to the shards so far; any
// goroutine may call it.
func (p *Pipeline) Routed() uint64 {
	var n uint64
	for _, f := range *p.feeders.Load() {
		n += f.Routed()
	}
	return n
}

// Stats returns the pipeline's counters; valid after Run has returned.
func (p *Pipeline) Stats() *Stats { return &p.stats }

// isEnding reports whether every source has returned and none can be added.
func (p *Pipeline) isEnding() bool { return p.ending.Load() }

// logDropped logs, sampled, a trade a shard could not apply.
func (p *Pipeline) logDropped(t *parse.Trade, why error) {
	if ce := p.log.Check(zap.WarnLevel, "trade dropped; its kline is flagged"); ce != nil {
		ce.Write(zap.String("symbol", p.symbols.Load().Name(t.Symbol)), zap.Int64("agg_id", t.AggID),
			zap.Int64("trade_time", t.TradeTime), zap.Error(why))
	}
}

// shardOf maps a symbol index to its shard. Fibonacci hashing spreads consecutive
// indices (symbols listed together are often equally busy) over shards.
func shardOf(symbol uint32, shards int) int {
	return int((uint64(symbol*2654435769) * uint64(shards)) >> 32)
}

// watermark is one source's largest trade time, published after the trades up to it
// sit in the rings. math.MaxInt64 marks a finished source.
type watermark struct {
	_   [64]byte
	v   atomic.Int64
	max atomic.Int64 // the source's largest trade time, stored when it finishes
	_   [48]byte
}

// current returns the pipeline's watermark: the smallest of the running sources'
// watermarks, or math.MaxInt64 when every source has finished.
func (p *Pipeline) current() int64 {
	wm := int64(math.MaxInt64)
	if p.cfg.Clock != nil {
		wm = p.cfg.Clock()
	}
	for _, w := range *p.wms.Load() {
		if v := w.v.Load(); v < wm {
			wm = v
		}
	}
	return wm
}

// final returns the largest trade time any source saw: the end-of-input watermark.
func (p *Pipeline) final() int64 {
	var wm int64 = math.MinInt64
	for _, w := range *p.wms.Load() {
		if v := w.max.Load(); v > wm {
			wm = v
		}
	}
	return wm
}
