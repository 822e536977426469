package exchange_test

import (
	"fmt"

	"github.com/klagg/klagg/exchange"
)

func Example() {
	ep := exchange.DefaultEndpoints(exchange.Futures)
	streams := []string{exchange.StreamName("BTCUSDT"), exchange.StreamName("ETHUSDT")}
	fmt.Println(exchange.CombinedURL(exchange.Futures, ep.WS, streams))
	fmt.Println(exchange.RawURL(exchange.Spot, exchange.DefaultEndpoints(exchange.Spot).WS))
	fmt.Printf("%s\n", exchange.SubscribeMessage(nil, "SUBSCRIBE", 1, streams[:1]))
	id, code, msg, ok := exchange.ParseReply([]byte(`{"error":{"code":2,"msg":"Invalid request"},"id":1}`))
	fmt.Println(id, code, msg, ok)
	// Output:
	// wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade
	// wss://stream.binance.com:9443/ws
	// {"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}
	// 1 2 Invalid request true
}
