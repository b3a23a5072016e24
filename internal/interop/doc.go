// Package interop checks that the engines a fleet runs read what
// pcapflow exports: DuckDB (through its Go driver, which needs cgo, so
// this is a module of its own and the main module stays pure Go) reads
// the Parquet of two sensors. .ci/run runs it: cd internal/interop &&
// CGO_ENABLED=1 go test ./...
package interop
