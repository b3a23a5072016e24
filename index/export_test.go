package index

import "github.com/cockroachdb/pebble/v2/vfs"

// SetKillPoint makes Build call f at its named points; a test that exits
// there simulates a killed index run.
func SetKillPoint(f func(string)) { killPoint = f }

// SetFS makes Build write the store through fs (fault injection).
func SetFS(o *Options, fs vfs.FS) { o.fs = fs }

// SetMemTable makes Build's store flush its memtable every n bytes, so
// that a small capture goes through the flushes a large one does.
func SetMemTable(o *Options, n int) { o.memtable = n }
