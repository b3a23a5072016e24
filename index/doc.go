// Package index is pcapflow's storage: the ingest pass that reads an
// archive of captures through one flow table, the Pebble store of an
// index (its key layout is in keys.go, every key one type), the
// in-memory index of a scan (Mem) behind the same Reader interface, and
// the reading of a flow's records in capture order for extraction and
// reassembly. Programs use it through package pcapflow; docs/index.md
// explains the layout, its sizes and its crash safety.
package index
