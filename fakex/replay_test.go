package fakex

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sharedData(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join("..", "..", "shared", "data", "binance", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared Binance data absent (%s): %v", path, err)
	}
	return path
}

// drain waits for the replay to end, then reads every text frame: once Done is
// closed everything has been written to the socket (the recordings are far
// smaller than a loopback socket buffer).
func drain(t *testing.T, s *Server, c *client) [][]byte {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("replay did not finish")
	}
	var out [][]byte
	for {
		f, err := c.frame(200 * time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out
			}
			t.Fatalf("read after %d frames: %v", len(out), err)
		}
		out = append(out, f.Payload)
	}
}

func TestReplayRecordingCombined(t *testing.T) {
	path := sharedData(t, "futures-ws-2021-07-22.ndjson")
	cfg := DefaultConfig()
	cfg.Replay = []string{path}
	cfg.Speed = 0
	cfg.WaitConns = 1
	s := startServer(t, cfg)
	streams := []string{"sushiusdt@aggTrade", "akrousdt@aggTrade", "keepusdt@aggTrade", "ctkusdt@aggTrade", "sushiusdt@bookTicker"}
	c := dial(t, s.WSURL()+"/market/stream?streams="+strings.Join(streams, "/"))
	var want []string
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, st := range streams {
			if strings.HasPrefix(line, `{"stream":"`+st+`"`) {
				want = append(want, line)
			}
		}
	}
	got := drain(t, s, c)
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("frame %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if got := s.Symbols(); len(got) != 4 {
		t.Fatalf("universe %v", got)
	}
	pr := s.Produced()
	var trades int64
	for _, r := range pr {
		trades += r.Count
	}
	if trades != int64(len(want)-strings.Count(strings.Join(want, "\n"), "@bookTicker")) {
		t.Fatalf("produced %d trades", trades)
	}
}

func TestReplayRecordingRawSpot(t *testing.T) {
	path := sharedData(t, "spot-ws-2021-10-12.ndjson")
	cfg := DefaultConfig()
	cfg.Market = "spot"
	cfg.Replay = []string{path}
	cfg.Speed = 0
	cfg.WaitConns = 1
	s := startServer(t, cfg)
	c := dial(t, s.WSURL()+"/ws")
	c.sendJSON(`{"method":"SUBSCRIBE","params":["nknusdt@aggTrade"],"id":1}`)
	got := drain(t, s, c)
	if len(got) < 2 || string(got[0]) != `{"result":null,"id":1}` {
		t.Fatalf("got %d frames, first %q", len(got), got)
	}
	pr := s.Produced()["NKNUSDT"]
	if int64(len(got)-1) != pr.Count {
		t.Fatalf("got %d trades, server produced %d", len(got)-1, pr.Count)
	}
	prev := int64(-1)
	for _, f := range got[1:] {
		e := decodeEvent(t, f)
		if e.Symbol != "NKNUSDT" || e.Best == nil || e.AggID <= prev || e.Stream != "" {
			t.Fatalf("bad raw spot frame %s", f)
		}
		prev = e.AggID
	}
	// REST prints the recorded strings back.
	first := decodeEvent(t, got[1])
	tr := aggTradesREST(t, s, "/api/v3/", fmt.Sprintf("symbol=NKNUSDT&fromId=%d&limit=1", first.AggID))
	if len(tr) != 1 || tr[0].P != first.Price || tr[0].Q != first.Qty || tr[0].T != first.Time {
		t.Fatalf("REST %+v, WS %+v", tr, first)
	}
}

func TestReplayCSV(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "BTCUSDT-aggTrades-2024-01-01.csv")
	rows := "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n" +
		"100,42000.10,0.005,1000,1001,1704067200000,true\n" +
		"101,42000.20,1.250,1002,1002,1704067200100,false\n" +
		"102,41999.90,0.100,1003,1005,1704067260000,true\n"
	if err := os.WriteFile(path, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Replay = []string{path}
	cfg.Speed = 1000 // 60 s of data in 60 ms
	cfg.WaitConns = 1
	s := startServer(t, cfg)
	// Nothing is sent until a client subscribes: the clock waits just before the
	// first trade, not at today's date.
	if got := s.Clock(); got != 1704067200000-1 {
		t.Fatalf("clock before the first trade = %d, want %d", got, int64(1704067200000-1))
	}
	c := dial(t, s.WSURL()+"/market/ws/btcusdt@aggTrade")
	got := drain(t, s, c)
	want := []string{
		`{"e":"aggTrade","E":1704067200000,"a":100,"s":"BTCUSDT","p":"42000.10","q":"0.005","f":1000,"l":1001,"T":1704067200000,"m":true}`,
		`{"e":"aggTrade","E":1704067200100,"a":101,"s":"BTCUSDT","p":"42000.20","q":"1.250","f":1002,"l":1002,"T":1704067200100,"m":false}`,
		`{"e":"aggTrade","E":1704067260000,"a":102,"s":"BTCUSDT","p":"41999.90","q":"0.100","f":1003,"l":1005,"T":1704067260000,"m":true}`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d frames %q", len(got), got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("frame %d = %s\nwant %s", i, got[i], want[i])
		}
	}
	_, _, body := get(t, s.RESTURL()+"/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=100")
	wantREST := `[{"a":100,"p":"42000.10","q":"0.005","f":1000,"l":1001,"T":1704067200000,"m":true},` +
		`{"a":101,"p":"42000.20","q":"1.250","f":1002,"l":1002,"T":1704067200100,"m":false},` +
		`{"a":102,"p":"41999.90","q":"0.100","f":1003,"l":1005,"T":1704067260000,"m":true}]`
	if string(body) != wantREST {
		t.Fatalf("REST %s\nwant %s", body, wantREST)
	}
	_, _, body = get(t, s.RESTURL()+"/fapi/v1/time")
	var tm struct{ ServerTime int64 }
	if json.Unmarshal(body, &tm) != nil || tm.ServerTime != 1704067260000 {
		t.Fatalf("time %s, want the last trade's", body)
	}
	_, _, body = get(t, s.RESTURL()+"/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=1704067200000")
	wantK := `[[1704067200000,"42000.10","42000.20","42000.10","42000.20","1.255",1704067259999,"52710.25050",3,"1.250","52500.25000","0"],` +
		`[1704067260000,"41999.90","41999.90","41999.90","41999.90","0.100",1704067319999,"4199.99000",3,"0.000","0.00000","0"]]`
	if string(body) != wantK {
		t.Fatalf("klines %s\nwant %s", body, wantK)
	}
}

func TestReplayMissingFile(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Replay = []string{filepath.Join(t.TempDir(), "nope.ndjson")}
	if _, err := New(cfg); !errors.Is(err, ErrReplay) {
		t.Fatalf("err = %v", err)
	}
}
