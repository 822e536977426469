package shard_test

import (
	"fmt"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

type printer struct{}

func (printer) Closed(k *shard.Kline)      { fmt.Printf("%s %s\n", k.Flags, k.AppendCSV(nil)) }
func (printer) Update(k *shard.Kline) bool { return true }
func (printer) Dropped(t *parse.Trade, why error) {
	fmt.Printf("dropped %d: %v\n", t.AggID, why)
}

func Example() {
	ivs, _ := shard.ParseIntervals("1m")
	a, _ := shard.New(shard.Config{Intervals: ivs, Grace: 2000, History: 2}, printer{})
	const t0 = 1709164800000 // 2024-02-29 00:00:00 UTC
	a.Apply(&parse.Trade{AggID: 1, FirstID: 10, LastID: 11, TradeTime: t0 + 5000, Price: 1050000000, Qty: 200000000})
	a.Apply(&parse.Trade{AggID: 2, FirstID: 12, LastID: 12, TradeTime: t0 + 9000, Price: 1100000000, Qty: 50000000, BuyerMaker: true})
	a.Advance(t0 + 2*60_000 + 2001) // closes 00:00 and the empty 00:01
	// Output:
	// - 1709164800000,10.5,11,10.5,11,2.5,1709164859999,26.5,3,2,21,0
	// empty 1709164860000,11,11,11,11,0,1709164919999,0,0,0,0,0
}
