// Package bench holds what klagg is measured with: a synthetic Binance feed generator
// (also the `make run` demo's feed and, later, the capacity test's), the naive baseline
// written the way a typical Go program would aggregate klines, and the end-to-end
// benchmark that runs both on the same frames in one run (`klagg bench --json`).
// Figures go to RESULTS.md with the command that produced them.
package bench
