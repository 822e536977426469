package api

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// Benchmarks of the serving side. Run them with:
//
//	go test -run '^$' -bench . -benchtime 3s -count 3 ./api/
//
// Every client runs in this process, on the same cores as the server: the
// figures are a floor for a server whose clients live elsewhere.

// BenchmarkPublish is the cost of Publish on the daemon's sink goroutine
// (time inside Publish only), with the hub draining concurrently:
// mode=steady publishes 64 updates then lets the hub catch up, so the queue
// never fills (the fast path); mode=flood publishes without pause, so most
// calls find the queue full and drop the update (reported as dropped/op);
// mode=queue is Publish's own work with the hub stopped.
func BenchmarkPublish(b *testing.B) {
	b.Run("mode=steady", func(b *testing.B) {
		s, _ := testServer(b, "futures", nil)
		k := mkKline(b, 0, 0, t0, 1, false)
		b.ReportAllocs()
		var inPublish time.Duration
		n := 0
		for b.Loop() {
			t := time.Now()
			for i := 0; i < 64; i++ {
				k.Count++
				s.Publish(&k)
			}
			inPublish += time.Since(t)
			n += 64
			for s.Stats().Processed < s.Stats().Published {
				runtime.Gosched()
			}
		}
		b.ReportMetric(float64(inPublish.Nanoseconds())/float64(n), "publish-ns")
		b.ReportMetric(float64(s.Stats().UpdatesDropped)/float64(n), "dropped/publish")
	})
	b.Run("mode=flood", func(b *testing.B) {
		s, _ := testServer(b, "futures", nil)
		k := mkKline(b, 0, 0, t0, 1, false)
		b.ReportAllocs()
		for b.Loop() {
			k.Count++
			s.Publish(&k)
		}
		b.StopTimer()
		waitProcessed(b, s)
		b.ReportMetric(float64(s.Stats().UpdatesDropped)/float64(b.N), "dropped/publish")
	})
	b.Run("mode=queue", func(b *testing.B) {
		// The hub is stopped: Publish's own work (one copy into the ring),
		// without waking anybody. The ring is emptied between rounds, untimed.
		s, _ := testServer(b, "futures", func(c *Config) { c.QueueSize = 1 << 16 })
		h := s.hub
		h.stop.Store(true)
		h.waiter.Wake()
		<-h.done
		k := mkKline(b, 0, 0, t0, 1, false)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			for items := h.in.Peek(); len(items) > 0; items = h.in.Peek() {
				h.in.Release(len(items))
			}
			b.StartTimer()
			for i := 0; i < 1<<15; i++ {
				k.Count++
				s.Publish(&k)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N<<15), "publish-ns")
		h.done = make(chan struct{})
		h.stop.Store(false)
		go h.run()
	})
}

// fanout is 1,000 WebSocket subscribers over 100 streams of one server.
type fanout struct {
	b        *testing.B
	s        *Server
	streams  int
	clients  int
	pubTimes []atomic.Int64 // publish time (ns since start) by kline sequence number
	start    time.Time
	received atomic.Int64
	minRound []atomic.Int64 // rounds fully received, per client
	lat      [][]int64      // per client, publish to receive (ns)
	wg       sync.WaitGroup
}

const fanoutMaxEvents = 1 << 22

func newFanout(b *testing.B, streams, clients int) *fanout {
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("S%03dUSDT", i)
	}
	hist := NewMemHistory()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Symbols = parse.NewSymbolTable(names...)
	cfg.Intervals = testIntervals(b)
	cfg.History = hist
	cfg.ConnAttempts = 0
	cfg.MaxConns = clients + 10
	cfg.QueueSize = 1 << 16
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	f := &fanout{b: b, s: s, streams: streams, clients: clients, pubTimes: make([]atomic.Int64, fanoutMaxEvents),
		minRound: make([]atomic.Int64, clients), lat: make([][]int64, clients), start: time.Now()}
	for c := 0; c < clients; c++ {
		cl := dialWS(b, s.wsURL("/ws/"+streamName(names[c%streams], "1m")))
		f.wg.Add(1)
		go f.read(c, cl)
	}
	waitFor(b, 30*time.Second, "1,000 subscriptions", func() bool { return s.Stats().Subscriptions == int64(clients) })
	return f
}

// publish sends closed kline number seq to stream seq%streams.
func (f *fanout) publish(seq int64) {
	k := shard.Kline{Symbol: uint32(seq % int64(f.streams)), Interval: 0, Closed: true,
		OpenTime: t0 + seq/int64(f.streams)*minute, Count: seq}
	k.CloseTime = k.OpenTime + minute - 1
	f.pubTimes[seq%fanoutMaxEvents].Store(int64(time.Since(f.start)))
	f.s.Publish(&k)
}

// waitRound waits until every client has received round r (its stream's
// kline of that round).
func (f *fanout) waitRound(r int64) {
	if r <= 0 {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for c := range f.minRound {
		for f.minRound[c].Load() < r {
			if time.Now().After(deadline) {
				f.b.Fatalf("client %d is stuck at round %d of %d (%+v)", c, f.minRound[c].Load(), r, f.s.Stats())
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

var nKey = []byte(`"n":`)

func (f *fanout) read(c int, cl *wsClient) {
	defer f.wg.Done()
	_ = cl.nc.SetReadDeadline(time.Time{})
	r := bufio.NewReaderSize(cl.r, 64<<10)
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
		if h.OpCode != ws.OpText {
			continue
		}
		now := int64(time.Since(f.start))
		i := bytes.Index(p, nKey)
		if i < 0 {
			continue
		}
		j := i + len(nKey)
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		seq, _ := strconv.ParseInt(string(p[i+len(nKey):j]), 10, 64)
		f.lat[c] = append(f.lat[c], now-f.pubTimes[seq%fanoutMaxEvents].Load())
		f.minRound[c].Store(seq/int64(f.streams) + 1)
		f.received.Add(1)
	}
}

// percentile returns the p-th percentile of every client's latencies.
func (f *fanout) percentile(p float64) time.Duration {
	var all []int64
	for c := range f.lat {
		all = append(all, f.lat[c]...)
	}
	if len(all) == 0 {
		return 0
	}
	slices.Sort(all)
	return time.Duration(all[min(len(all)-1, int(float64(len(all))*p))])
}

// BenchmarkFanout publishes closed klines round-robin over 100 streams with
// 10 subscribers each (1,000 connections): messages/s delivered and the
// publish-to-receive delay. rate=max keeps at most 5 rounds (5,000
// messages) in flight; a paced rate publishes one round (100 klines, 1,000
// messages) at a time on a fixed schedule.
func BenchmarkFanout(b *testing.B) {
	for _, rate := range []int{0, 20_000, 50_000} {
		name := "rate=max"
		if rate > 0 {
			name = fmt.Sprintf("rate=%dmsgs", rate)
		}
		b.Run(name, func(b *testing.B) {
			f := newFanout(b, 100, 1000)
			roundEvery := time.Duration(0)
			if rate > 0 {
				roundEvery = time.Second * time.Duration(f.clients) / time.Duration(rate)
			}
			b.ResetTimer()
			start := time.Now()
			seq := int64(0)
			rounds := int64(max(1, b.N/100))
			for r := int64(0); r < rounds; r++ {
				if roundEvery > 0 {
					if d := time.Until(start.Add(time.Duration(r) * roundEvery)); d > 0 {
						time.Sleep(d)
					}
				}
				for i := 0; i < f.streams; i++ {
					f.publish(seq)
					seq++
				}
				if roundEvery == 0 {
					f.waitRound(r - 5)
				}
			}
			f.waitRound(rounds)
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(f.received.Load())/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(f.percentile(0.50).Microseconds()), "p50-us")
			b.ReportMetric(float64(f.percentile(0.99).Microseconds()), "p99-us")
			if st := f.s.Stats(); st.SlowDisconnects > 0 || st.ClosedLost > 0 {
				b.Fatalf("lost data: %+v", st)
			}
		})
	}
}

// BenchmarkRESTKlines is GET /fapi/v1/klines?limit=1500 from an in-memory
// history, over loopback HTTP with keep-alive, from 4 concurrent clients.
func BenchmarkRESTKlines(b *testing.B) {
	s, hist := testServer(b, "futures", nil)
	ivs := testIntervals(b)
	var ks []shard.Kline
	for i := 0; i < 2000; i++ {
		ks = append(ks, mkKline(b, 0, 0, ivs[0].OpenTime(t0)+int64(i)*minute, int64(i), true))
	}
	hist.Add("BTCUSDT", "1m", ks...)
	benchRESTParallel(b, []string{s.httpURL("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1500")})
}

// BenchmarkCloseLatency is the delay from Publish of a closed kline to its
// closing event arriving at one WebSocket subscriber, one kline at a time: what
// klagg adds to the pipeline's own closing delay (its grace). The server's
// klagg_api_close_delay_seconds histogram measures the whole: period end to
// the frame leaving.
func BenchmarkCloseLatency(b *testing.B) {
	s, _ := testServer(b, "futures", nil)
	c := dialWS(b, s.wsURL("/ws/btcusdt@kline_1m"))
	waitFor(b, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
	var lat []time.Duration
	i := int64(0)
	for b.Loop() {
		k := mkKline(b, 0, 0, t0+i*minute, i, true)
		i++
		t := time.Now()
		s.Publish(&k)
		c.text(5 * time.Second)
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
