package api_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/klagg/klagg/api"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// A server on a free loopback port: closed klines come from History, the
// open one from Publish, and a Binance client reads them back.
func Example() {
	intervals, _ := shard.ParseIntervals("1m,90m")
	hist := api.NewMemHistory()
	cfg := api.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Symbols = parse.NewSymbolTable("BTCUSDT")
	cfg.Intervals = intervals
	cfg.History = hist
	s, err := api.New(cfg)
	if err != nil {
		panic(err)
	}
	if err := s.Start(); err != nil {
		panic(err)
	}
	defer s.Close()

	hist.Add("BTCUSDT", "1m", shard.Kline{OpenTime: 0, CloseTime: 59_999, Closed: true,
		Open: 100_00000000, High: 101_00000000, Low: 99_50000000, Close: 100_50000000, Count: 3})
	// A running update of the next minute (the daemon's sink goroutine does this).
	s.Publish(&shard.Kline{Symbol: 0, Interval: 0, OpenTime: 60_000, CloseTime: 119_999,
		Open: 100_50000000, High: 100_50000000, Low: 100_50000000, Close: 100_50000000, Count: 1})
	for s.Stats().Processed < 1 {
		time.Sleep(time.Millisecond)
	}

	resp, err := http.Get("http://" + s.Addr() + "/fapi/v1/klines?symbol=BTCUSDT&interval=1m")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	// Output:
	// [[0,"100","101","99.5","100.5","0",59999,"0",3,"0","0","0"],[60000,"100.5","100.5","100.5","100.5","0",119999,"0",1,"0","0","0"]]
}
