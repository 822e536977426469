// Package record reads recorded Binance market data: NDJSON captures of raw WebSocket
// text frames (plain or gzip, with or without a prefix before each frame) and
// data.binance.vision aggTrades CSV files (plain, gzip or zip). A Reader hands out one
// record at a time from one reused buffer; decoding the records is parse's job.
// The format comes from the file name, and Open checks the first bytes against it,
// so a file named for the wrong format fails at once rather than reading as nothing.
// A line longer than MaxLine is dropped without being buffered and reported once
// with ErrLineTooLong, so a replay counts it and goes on with the next line.
// FileDate reads the date in a data.binance.vision file name, by which a symbol's
// files are put in order.
package record
