package fakex

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkThroughput measures frames/s from the synthetic feed to one client
// over loopback; the client only reads frame headers and skips payloads.
//
//	go test -run '^$' -bench Throughput -benchmem ./fakex
func BenchmarkThroughput(b *testing.B) {
	for _, combined := range []bool{true, false} {
		b.Run(fmt.Sprintf("combined=%v", combined), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Symbols = 50
			cfg.Rate = 0
			cfg.WaitConns = 1
			cfg.History = 1000
			cfg.SlowTimeout = time.Minute
			s := startServer(b, cfg)
			names := make([]string, cfg.Symbols)
			for i := range names {
				names[i] = fmt.Sprintf("s%04dusdt@aggTrade", i)
			}
			url := s.WSURL() + "/market/ws/" + strings.Join(names, "/")
			if combined {
				url = s.WSURL() + "/market/stream?streams=" + strings.Join(names, "/")
			}
			c := dial(b, url)
			_ = c.nc.SetReadDeadline(time.Time{})
			var bytes int64
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				h, err := ws.ReadHeader(c.r)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.r.Discard(int(h.Length)); err != nil {
					b.Fatal(err)
				}
				bytes += h.Length
			}
			el := time.Since(start)
			b.SetBytes(bytes / int64(max(1, b.N)))
			b.ReportMetric(float64(b.N)/el.Seconds(), "frames/s")
		})
	}
}
