package api

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
)

// BenchmarkIngestSubscribers answers issue 8's first question: does serving
// 1,000 WebSocket subscribers over 100 streams slow ingestion down? The real
// pipeline (pipeline.New, a pipeline.Frames source of synthetic aggTrade
// frames for 100 symbols, Binance's 15 futures intervals, Updates on as the
// daemon runs it) feeds api.Sink{Server, Next: a discard sink}. Two servers
// take turns, one pass each per iteration (the order alternates, so that a
// neighbour's load on the shared machine hits both alike): one with no
// subscriber, one with 1,000 clients, 10 per <symbol>@kline_1m stream, real
// WebSocket connections over loopback that read every frame as it comes.
// Each server gets the same frames (two generators, one seed) in data-time
// order.
//
// trades/s is trades over the pipeline's Run time; cpu-ns/trade is the
// process's CPU time (user + system, every goroutine: pipeline, hub, writers
// and the in-process clients) from the start of a pass until the clients
// have received everything, divided by the pass's trades. ratio-% is
// trades/s with subscribers over trades/s without. After each pass every
// client must have received exactly the closed 1m klines of its symbol that
// the pipeline produced, and no kline may be lost or client dropped.
//
// The clients share the process and its cores: they do the least a client
// must (parse each frame's header, read its payload, spot closing events,
// answer pings) and their goroutines carry the pprof label
// role=ws-client, so a CPU profile tells their share apart (the pipeline's
// goroutines carry role=pipeline and side=subs=0 or subs=1000, the frame
// generator role=generate; the server's hub, writers and readers none):
//
//	go test -run '^$' -bench 'IngestSubscribers' -benchtime 8x -count 1 ./api/
//	go test -run '^$' -bench 'IngestSubscribers/updates=cadence' -benchtime 8x -count 1 -cpuprofile /tmp/ingest.prof ./api/
//	go tool pprof -tagfocus role=ws-client -top api.test /tmp/ingest.prof
//
// updates=cadence is the daemon's default (open klines at most every 250 ms
// per stream, as Binance's futures); updates=every-change sends every update
// the pipeline produces (the daemon's --every-change), the worst case.
//
// The data rate sets how much market time a pass covers, and so how many
// klines close per second of wall time: at data=5000tps (a busy market over
// 100 symbols) the pipeline replays market time hundreds of times faster than
// it passes (market-s/wall-s), so every stream's 1m kline closes several
// times a second, a closing event for each of its 10 subscribers: a stress far
// beyond live operation. At data=4000000tps market time passes about as fast
// as the wall clock, as it does live: the subscribers get the cadence's
// updates and a close per stream a minute.
func BenchmarkIngestSubscribers(b *testing.B) {
	for _, c := range []struct {
		everyChange bool
		dataRate    float64
	}{{false, ingestDataRate}, {false, ingestLiveRate}, {true, ingestDataRate}} {
		name := "updates=cadence"
		if c.everyChange {
			name = "updates=every-change"
		}
		b.Run(fmt.Sprintf("%s/data=%.0ftps", name, c.dataRate), func(b *testing.B) { benchIngest(b, c.everyChange, c.dataRate) })
	}
}

const (
	ingestSymbols        = 100
	ingestPerStream      = 10        // subscribers per stream: 1,000 in all
	ingestFramesPerPass  = 1 << 20   // a quarter to half a second of pipeline time per pass
	ingestDataRate       = 5_000     // aggTrades per second of market time over the 100 symbols: a busy market
	ingestLiveRate       = 4_000_000 // about the pipeline's own rate: market time passes about as fast as the wall clock
	ingestSettleDeadline = 60 * time.Second
)

// ingestSide is one server and what its passes added up to.
type ingestSide struct {
	name    string
	s       *Server
	table   *parse.SymbolTable
	gen     *fakex.Generator
	clients []*ingestClient
	// expected closes per client: the 1m closed klines of its symbol so far.
	expected []int64

	trades   uint64
	runTime  time.Duration
	cpu      time.Duration
	passes   int
	maxDrain time.Duration
	dropped  uint64 // updates the hub could not take (coalesced away)
}

// ingestClient is one subscriber: a reader goroutine and its counts.
type ingestClient struct {
	symbol int
	frames atomic.Int64 // every frame received
	closes atomic.Int64 // closing events (x: true) received
	_      [cacheLineBench - 24]byte
}

const cacheLineBench = 64

// ingestSink stands for the store: it counts the closed 1m klines per symbol
// (what the subscribers must receive) and drops everything. Sink goroutine
// only; read after Run returns.
type ingestSink struct{ closes1m []int64 }

func (s *ingestSink) Kline(k *shard.Kline) error {
	if k.Closed && !k.Mark && k.Interval == 0 && k.Flags&shard.FlagCorrected == 0 {
		s.closes1m[k.Symbol]++
	}
	return nil
}

func (s *ingestSink) Close() error { return nil }

func newIngestSide(b *testing.B, name string, subscribers int, everyChange bool, dataRate float64, ivs []shard.Interval) *ingestSide {
	gc := fakex.DefaultGenConfig()
	gc.Symbols, gc.Rate, gc.Seed = ingestSymbols, dataRate, 8
	gen := fakex.NewGenerator(gc)
	table := parse.NewSymbolTable(gen.Symbols()...)
	cfg := DefaultConfig()
	cfg.Market = "futures"
	cfg.Listen = "127.0.0.1:0"
	cfg.Symbols = table
	cfg.Intervals = ivs
	cfg.History = NewMemHistory()
	cfg.EveryChange = everyChange
	cfg.ConnAttempts = 0 // 1,000 connections from one address in a second
	cfg.MaxConns = subscribers + 10
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	side := &ingestSide{name: name, s: s, table: table, gen: gen, expected: make([]int64, subscribers)}
	var wg sync.WaitGroup
	// Cleanups run last in, first out: the server and the connections close
	// first, then the readers are waited for.
	b.Cleanup(wg.Wait)
	b.Cleanup(func() { _ = s.Close() })
	names := gen.Symbols()
	for i := range subscribers {
		cl := &ingestClient{symbol: i % ingestSymbols}
		c := dialWS(b, s.wsURL("/ws/"+streamName(names[cl.symbol], ivs[0].Name)))
		side.clients = append(side.clients, cl)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pprof.Do(context.Background(), pprof.Labels("role", "ws-client"), func(context.Context) { cl.read(c) })
		}()
	}
	waitFor(b, 30*time.Second, fmt.Sprintf("%d subscriptions", subscribers), func() bool {
		return s.Stats().Subscriptions == int64(subscribers)
	})
	return side
}

var closingKey = []byte(`"x":true`)

// read consumes frames until the connection closes.
func (cl *ingestClient) read(c *wsClient) {
	_ = c.nc.SetReadDeadline(time.Time{})
	r := bufio.NewReaderSize(c.r, 16<<10)
	var p []byte
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return
		}
		p = slices.Grow(p[:0], int(h.Length))[:h.Length]
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		switch h.OpCode {
		case ws.OpText:
			if bytes.Contains(p, closingKey) {
				cl.closes.Add(1)
			}
		case ws.OpPing:
			_ = ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewFrame(ws.OpPong, true, p)))
		}
		cl.frames.Add(1)
	}
}

// framesPass holds one pass's frames: one buffer and views into it, reused.
type framesPass struct {
	buf    []byte
	frames [][]byte
}

func (fp *framesPass) fill(gen *fakex.Generator, n int) {
	fp.buf = fp.buf[:0]
	ends := make([]int, n)
	for i := range n {
		fp.buf = gen.Append(fp.buf)
		ends[i] = len(fp.buf)
	}
	fp.frames = fp.frames[:0]
	start := 0
	for _, end := range ends {
		fp.frames = append(fp.frames, fp.buf[start:end:end])
		start = end
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pass runs a fresh pipeline over the side's next frames into its server and
// waits until the hub and every client have taken all of it.
func (side *ingestSide) pass(b *testing.B, pcfg pipeline.Config, fp *framesPass) {
	b.StopTimer()
	pprof.Do(context.Background(), pprof.Labels("role", "generate"), func(context.Context) { fp.fill(side.gen, ingestFramesPerPass) })
	sink := &ingestSink{closes1m: make([]int64, ingestSymbols)}
	p, err := pipeline.New(pcfg, side.table, []pipeline.Source{&pipeline.Frames{Frames: fp.frames}}, Sink{Server: side.s, Next: sink}, nil)
	if err != nil {
		b.Fatal(err)
	}
	dropped := side.s.Stats().UpdatesDropped
	b.StartTimer()
	cpu0 := cpuTime()
	// The pipeline's goroutines inherit the labels: a profile tells the
	// passes' sides apart.
	pprof.Do(context.Background(), pprof.Labels("role", "pipeline", "side", side.name), func(ctx context.Context) {
		err = p.Run(ctx)
	})
	if err != nil {
		b.Fatal(err)
	}
	ran := time.Now()
	for i, cl := range side.clients {
		side.expected[i] += sink.closes1m[cl.symbol]
	}
	// Settled: the hub has handled every published kline, every client has
	// every closing event of its symbol and every frame sent. Pending open
	// updates leave at the next cadence tick, so it must hold again after one.
	settled := func() bool {
		st := side.s.Stats()
		if st.Processed < st.Published {
			return false
		}
		var frames int64
		for i, cl := range side.clients {
			if cl.closes.Load() != side.expected[i] {
				return false
			}
			frames += cl.frames.Load()
		}
		return uint64(frames) == st.FramesSent
	}
	waitFor(b, ingestSettleDeadline, side.name+" to deliver the pass", settled)
	side.maxDrain = max(side.maxDrain, time.Since(ran))
	if len(side.clients) > 0 {
		time.Sleep(side.s.cfg.cadence(side.s.cfg.Intervals[0]) + 20*time.Millisecond)
		waitFor(b, ingestSettleDeadline, side.name+" to deliver the pass's last updates", settled)
	}
	side.cpu += cpuTime() - cpu0
	b.StopTimer()
	st := p.Stats()
	side.trades += st.Shard.Trades
	side.runTime += st.Elapsed
	side.passes++
	ss := side.s.Stats()
	side.dropped += ss.UpdatesDropped - dropped
	if ss.ClosedLost > 0 || ss.SlowDisconnects > 0 || ss.Connections != len(side.clients) {
		b.Fatalf("%s lost data or clients: %+v", side.name, ss)
	}
	b.StartTimer()
}

func benchIngest(b *testing.B, everyChange bool, dataRate float64) {
	ivs := shard.BinanceIntervals(false)
	pcfg := pipeline.DefaultConfig()
	pcfg.Shard.Intervals = ivs
	pcfg.Updates = true // as the daemon runs it with the API on
	none := newIngestSide(b, "subs=0", 0, everyChange, dataRate, ivs)
	subs := newIngestSide(b, "subs=1000", ingestSymbols*ingestPerStream, everyChange, dataRate, ivs)
	fp := &framesPass{}
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			none.pass(b, pcfg, fp)
			subs.pass(b, pcfg, fp)
		} else {
			subs.pass(b, pcfg, fp)
			none.pass(b, pcfg, fp)
		}
		i++
	}
	b.StopTimer()
	var received int64
	for _, cl := range subs.clients {
		received += cl.frames.Load()
	}
	rate := func(s *ingestSide) float64 { return float64(s.trades) / s.runTime.Seconds() }
	b.ReportMetric(rate(none), "trades/s-subs=0")
	b.ReportMetric(rate(subs), "trades/s-subs=1000")
	b.ReportMetric(100*rate(subs)/rate(none), "ratio-%")
	b.ReportMetric(float64(none.cpu.Nanoseconds())/float64(none.trades), "cpu-ns/trade-subs=0")
	b.ReportMetric(float64(subs.cpu.Nanoseconds())/float64(subs.trades), "cpu-ns/trade-subs=1000")
	// Frames the clients received per second of the passes' Run time (the
	// flush after each pass included: a slight overstatement).
	b.ReportMetric(float64(received)/subs.runTime.Seconds(), "client-msgs/s")
	b.ReportMetric(float64(subs.maxDrain.Milliseconds()), "max-drain-ms")
	b.ReportMetric(float64(subs.trades)/dataRate/subs.runTime.Seconds(), "market-s/wall-s")
	b.ReportMetric(float64(none.dropped)/float64(none.passes), "hub-drops/pass-subs=0")
	b.ReportMetric(float64(subs.dropped)/float64(subs.passes), "hub-drops/pass-subs=1000")
}
