module github.com/klagg/klagg

go 1.26

require (
	github.com/Workiva/go-datastructures v1.1.7 // indirect
	github.com/klauspost/compress v1.15.15 // indirect
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	github.com/minio/simdjson-go v0.4.5 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/sys v0.41.0 // indirect
)
