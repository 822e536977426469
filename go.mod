module github.com/klagg/klagg

go 1.26

require (
	github.com/VictoriaMetrics/metrics v1.45.0
	github.com/Workiva/go-datastructures v1.1.7
	github.com/adshao/go-binance/v2 v2.8.7
	github.com/chromedp/chromedp v0.23.1
	github.com/gobwas/ws v1.5.0
	github.com/klauspost/cpuid/v2 v2.4.2
	github.com/mattn/go-sqlite3 v1.14.53
	github.com/minio/simdjson-go v0.4.5
	github.com/schollz/progressbar/v3 v3.19.1
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.46.0
	golang.org/x/term v0.44.0
)

require (
	github.com/bitly/go-simplejson v0.5.0 // indirect
	github.com/chromedp/cdproto v0.160.1 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/jpillora/backoff v1.0.0 // indirect
	github.com/klauspost/compress v1.15.15 // indirect
	github.com/mitchellh/colorstring v0.0.0-20190213212951-d06e56a500db // indirect
	github.com/rivo/uniseg v0.4.7 // indirect
	github.com/shopspring/decimal v1.4.0 // indirect
	github.com/valyala/fastrand v1.1.0 // indirect
	github.com/valyala/histogram v1.2.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)
