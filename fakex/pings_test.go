package fakex_test

import (
	"context"
	"testing"
	"time"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
)

// TestClientPings runs exchange.Conn's liveness check against fakex on
// loopback, for both markets: the client pings while the feed flows, then sends
// LIST_SUBSCRIPTIONS. fakex handles a connection's incoming frames in order and
// sends its replies in that order, so once the reply is read, the pong (if the
// server answers pings) has been read before it: no timing is involved. With the
// ignorepings fault the ping stays unanswered, which is how a reader pinging on
// a timer finds a connection dead; without it the pong arrives and matches.
func TestClientPings(t *testing.T) {
	for _, market := range []exchange.Market{exchange.Futures, exchange.Spot} {
		for _, faults := range []string{"", "ignorepings"} {
			t.Run(market.String()+"/faults="+faults, func(t *testing.T) {
				f, err := fakex.ParseFaults(faults)
				if err != nil {
					t.Fatal(err)
				}
				cfg := fakex.DefaultConfig()
				cfg.Market, cfg.Symbols, cfg.Rate, cfg.Faults = market.String(), 2, 2000, f
				srv, err := fakex.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = srv.Close() })

				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				url := exchange.CombinedURL(market, srv.WSURL(), []string{exchange.StreamName(srv.Symbols()[0])})
				conn, err := exchange.Dial(ctx, url, exchange.DefaultConnConfig(market))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				read := func() []byte {
					t.Helper()
					if ok, err := conn.Poll(5 * time.Second); err != nil || !ok {
						t.Fatalf("nothing to read for 5 s: %v", err)
					}
					msg, err := conn.Read(nil)
					if err != nil {
						t.Fatal(err)
					}
					return msg
				}
				for len(read()) == 0 { // the feed flows: ping in the middle of it
				}

				if _, ok := conn.UnansweredPing(); ok {
					t.Fatal("a ping waits before any was sent")
				}
				before := time.Now()
				if err := conn.Ping(); err != nil {
					t.Fatal(err)
				}
				if err := conn.WriteText(exchange.SubscribeMessage(nil, "LIST_SUBSCRIPTIONS", 7, nil)); err != nil {
					t.Fatal(err)
				}
				for {
					if id, _, _, ok := exchange.ParseReply(read()); ok && id == 7 {
						break
					}
				}

				sent, waiting := conn.UnansweredPing()
				st := conn.Stats()
				if faults == "ignorepings" {
					if !waiting || sent.Before(before) || st.PongsMatched != 0 {
						t.Fatalf("ignored ping not detected: waiting %v since %v (pinged at %v), stats %+v", waiting, sent, before, st)
					}
					if n := srv.Stats().Faults["ignorepings"]; n != 1 {
						t.Errorf("fakex counted %d ignored pings, want 1", n)
					}
					return
				}
				if waiting || st.PingsSent != 1 || st.PongsMatched != 1 {
					t.Fatalf("pong not matched: waiting %v since %v, stats %+v", waiting, sent, st)
				}
			})
		}
	}
}
