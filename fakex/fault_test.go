package fakex

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestParseFaults(t *testing.T) {
	good := []struct {
		spec string
		want Faults
	}{
		{"", Faults{}},
		{"drop=5", Faults{Drop: 5}},
		{" stall=250ms@10 , dup=3", Faults{StallFor: 250 * time.Millisecond, StallAfter: 10, Dup: 3}},
		{"malformed=7,withhold=2@0,ratelimit=4,shutdown=9,ignorepings", Faults{Malformed: 7, WithholdN: 2, RateLimit: 4, Shutdown: 9, IgnorePings: true}},
		{"late=300ms", Faults{Late: 300 * time.Millisecond}},
		{"list=newusdt@100,delist=S0001USDT@5,list=B@1,seed=-3", Faults{
			List: []SymbolAt{{"NEWUSDT", 100}, {"B", 1}}, Delist: []SymbolAt{{"S0001USDT", 5}}, Seed: -3, HasSeed: true}},
	}
	for _, tc := range good {
		got, err := ParseFaults(tc.spec)
		if err != nil {
			t.Errorf("ParseFaults(%q): %v", tc.spec, err)
			continue
		}
		if got.String() != tc.want.String() {
			t.Errorf("ParseFaults(%q) = %q, want %q", tc.spec, got, tc.want)
		}
		if again, err := ParseFaults(got.String()); err != nil || again.String() != got.String() {
			t.Errorf("round trip of %q: %q, %v", got, again, err)
		}
	}
	for _, spec := range []string{"drop", "drop=0", "drop=-1", "drop=x", "stall=5s", "stall=x@3", "stall=-1s@3",
		"withhold=3", "withhold=0@1", "list=@5", "list=X", "delist=X@-1", "ignorepings=1", "seed=a", "bogus=1", "nope", "late=0s", "late=x"} {
		if _, err := ParseFaults(spec); !errors.Is(err, ErrFault) {
			t.Errorf("ParseFaults(%q) err = %v, want ErrFault", spec, err)
		}
	}
}

// faultServer starts a synthetic one-symbol futures feed with faults.
func faultServer(t *testing.T, spec string) (*Server, *client) {
	t.Helper()
	f, err := ParseFaults(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := synthetic("futures")
	cfg.Symbols = 2
	cfg.Rate = 5000
	cfg.Faults = f
	cfg.ShutdownGrace = 200 * time.Millisecond
	s := startServer(t, cfg)
	return s, dial(t, s.WSURL()+"/market/stream?streams=s0000usdt@aggTrade/s0001usdt@aggTrade")
}

func TestFaultDrop(t *testing.T) {
	s, c := faultServer(t, "drop=25")
	texts, gotClose := c.untilClosed(5 * time.Second)
	if len(texts) != 25 || gotClose {
		t.Fatalf("got %d frames (close frame %v), want 25 then an abrupt end", len(texts), gotClose)
	}
	if s.Stats().Faults["drop"] != 1 {
		t.Fatalf("faults %v", s.Stats().Faults)
	}
}

func TestFaultStall(t *testing.T) {
	s, c := faultServer(t, "stall=300ms@10")
	var last time.Time
	next := map[string]int64{}
	for i := range 40 {
		e := decodeEvent(t, c.text())
		now := time.Now()
		if i == 10 && now.Sub(last) < 150*time.Millisecond {
			t.Fatalf("frame 11 came %v after frame 10; the stall is 300ms", now.Sub(last))
		}
		last = now
		if want, ok := next[e.Symbol]; ok && e.AggID != want {
			t.Fatalf("frame lost across the stall: %s id %d, want %d", e.Symbol, e.AggID, want)
		}
		next[e.Symbol] = e.AggID + 1
	}
	if s.Stats().Faults["stall"] != 1 {
		t.Fatalf("faults %v", s.Stats().Faults)
	}
}

func TestFaultMalformed(t *testing.T) {
	s, c := faultServer(t, "malformed=4")
	bad, kinds := 0, map[string]bool{}
	prevBad := false
	for i := 0; i < 60; i++ {
		f := c.text()
		var v any
		isBad := !utf8.Valid(f) || json.Unmarshal(f, &v) != nil || bytes.Contains(f, []byte(".5,"))
		if isBad {
			bad++
			switch {
			case !utf8.Valid(f):
				kinds["utf8"] = true
			case bytes.Contains(f, []byte(".5,")):
				kinds["number"] = true
			default:
				kinds["truncated"] = true
			}
		} else if prevBad && !bytes.Contains(f, []byte(`"e":"aggTrade"`)) {
			t.Fatalf("the real trade does not follow the malformed frame: %s", f)
		}
		if isBad && prevBad {
			t.Fatal("two malformed frames in a row")
		}
		prevBad = isBad
	}
	if bad < 10 || len(kinds) != 3 {
		t.Fatalf("%d malformed frames of kinds %v", bad, kinds)
	}
	if s.Stats().Faults["malformed"] < 10 {
		t.Fatalf("faults %v", s.Stats().Faults)
	}
}

func TestFaultDup(t *testing.T) {
	_, c := faultServer(t, "dup=5")
	var frames [][]byte
	for range 36 {
		frames = append(frames, c.text())
	}
	dups := 0
	for i := 1; i < len(frames); i++ {
		if bytes.Equal(frames[i], frames[i-1]) {
			dups++
		}
	}
	if dups != 6 { // frames 5,10,..,30 of the feed, each once more
		t.Fatalf("%d duplicates in 36 frames, want 6", dups)
	}
}

func TestFaultShutdown(t *testing.T) {
	s, c := faultServer(t, "shutdown=10")
	texts, gotClose := c.untilClosed(5 * time.Second)
	if len(texts) < 11 || !gotClose {
		t.Fatalf("%d frames, close frame %v", len(texts), gotClose)
	}
	want := `{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":`
	if !strings.HasPrefix(string(texts[10]), want) {
		t.Fatalf("frame 11 = %s", texts[10])
	}
	if s.Stats().Faults["shutdown"] != 1 {
		t.Fatalf("faults %v", s.Stats().Faults)
	}
}

func TestFaultIgnorePings(t *testing.T) {
	_, c := faultServer(t, "ignorepings")
	c.send(ws.OpPing, []byte("x"))
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		f, err := c.frame(time.Until(deadline))
		if err != nil {
			break
		}
		if f.Header.OpCode == ws.OpPong {
			t.Fatal("pong despite ignorepings")
		}
	}
}

func TestFaultListDelist(t *testing.T) {
	s, c := faultServer(t, "list=S0001USDT@200,delist=S0000USDT@400")
	if got := s.Symbols(); !slices.Equal(got, []string{"S0000USDT"}) {
		t.Fatalf("universe before listing %v", got)
	}
	_, _, body := get(t, s.RESTURL()+"/fapi/v1/exchangeInfo")
	if strings.Contains(string(body), "S0001USDT") {
		t.Fatal("S0001USDT in exchangeInfo before its listing")
	}
	seen1 := false
	for range 350 {
		if e := decodeEvent(t, c.text()); e.Symbol == "S0001USDT" {
			seen1 = true
		}
	}
	if !seen1 {
		t.Fatal("listed symbol never traded")
	}
	// After the delisting only S0001USDT trades.
	for i := 0; ; i++ {
		if i > 2000 {
			t.Fatal("S0000USDT still trading")
		}
		if slices.Equal(s.Symbols(), []string{"S0001USDT"}) {
			break
		}
		c.text()
	}
	lastID := s.Produced()["S0000USDT"].Last
	for range 300 { // frames queued before the delisting may still come
		if e := decodeEvent(t, c.text()); e.Symbol == "S0000USDT" && e.AggID > lastID {
			t.Fatal("delisted symbol still trading")
		}
	}
	_, _, body = get(t, s.RESTURL()+"/fapi/v1/exchangeInfo")
	if !strings.Contains(string(body), `"symbol":"S0000USDT","pair":"S0000USDT","contractType":"PERPETUAL","deliveryDate":4133404800000,"onboardDate":1569398400000,"status":"SETTLING"`) {
		t.Fatalf("delisted symbol not SETTLING: %s", body)
	}
	if f := s.Stats().Faults; f["list"] != 1 || f["delist"] != 1 {
		t.Fatalf("faults %v", f)
	}
}

func TestListUnknownSymbolRejected(t *testing.T) {
	cfg := synthetic("futures")
	cfg.Faults.List = []SymbolAt{{"NOPEUSDT", 1}}
	if _, err := New(cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v", err)
	}
}
