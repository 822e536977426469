// Package record reads recorded Binance market data: NDJSON captures of raw WebSocket
// text frames (plain or gzip, with or without a prefix before each frame) and
// data.binance.vision aggTrades CSV files (plain, gzip or zip). A Reader hands out one
// record at a time from one reused buffer; decoding the records is parse's job.
// A line longer than MaxLine is dropped without being buffered and reported once
// with ErrLineTooLong, so a replay counts it and goes on with the next line.
package record
