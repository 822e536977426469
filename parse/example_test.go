package parse_test

import (
	"fmt"

	"github.com/klagg/klagg/parse"
)

func Example() {
	symbols := parse.NewSymbolTable("BTCUSDT")
	dec := parse.NewDecoder(parse.DefaultConfig(), symbols)
	frame := []byte(`{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1634944096640,"s":"BTCUSDT","a":5,"p":"60759.60000000","q":"0.00841000","f":10,"l":12,"T":1634944096633,"m":true,"M":true}}`)
	var t parse.Trade
	kind, err := dec.Decode(&t, frame)
	fmt.Println(kind, err, symbols.Load().Name(t.Symbol), t.Price, t.Qty, t.Count())
	kind, err = dec.Decode(&t, []byte(`{"result":null,"id":1}`))
	fmt.Println(kind, err, dec.Counters().Frames[parse.KindAggTrade])
	// Output:
	// aggTrade <nil> BTCUSDT 60759.6 0.00841 3
	// result <nil> 1
}
