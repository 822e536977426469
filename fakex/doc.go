// Package fakex is klagg's fake Binance exchange. Its Generator is a synthetic market:
// Binance-layout aggTrade frames (futures or spot) with consecutive ids per symbol,
// random-walk prices and Zipf-skewed symbols, made without allocating. The same
// feed drives the `make run` demo, the end-to-end benchmark and the capacity test.
package fakex
