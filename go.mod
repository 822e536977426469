module github.com/klagg/klagg

go 1.26

require (
	github.com/Workiva/go-datastructures v1.1.7
	github.com/gobwas/ws v1.5.0
	github.com/klauspost/cpuid/v2 v2.4.2
	github.com/minio/simdjson-go v0.4.5
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.41.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/klauspost/compress v1.15.15 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)
