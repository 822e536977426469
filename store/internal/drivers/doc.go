// Package drivers benchmarks package store on both SQLite drivers: the cgo
// github.com/mattn/go-sqlite3 store links, and the pure-Go modernc.org/sqlite. It is
// a module of its own so that the driver store does not use stays out of klagg's
// go.mod. Run it from this directory:
//
//	go test -run '^$' -bench . -count 5
package drivers
