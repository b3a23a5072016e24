// Package pcapflow turns packet captures into a database of flows: an
// index built once, then questions answered in milliseconds, packets and
// reassembled streams pulled out of gigabytes by reading only the
// records that belong to them. It is what the pcapflow command is built
// on; anything the command does, a Go program does the same way.
//
// # Archives
//
// An [Archive] is the flows of a set of captures: files, or directories
// of rotated files (found by content, taken in time order; a connection
// that crosses a rotation is one flow per direction). It comes from an
// index on disk, or from a scan into memory; both answer every question
// the same way.
//
//	n, err := pcapflow.Index(ctx, "archive.pfidx", []string{"/captures"}, nil) // once; again to add files
//	a, err := pcapflow.Open("archive.pfidx")                            // many readers at once
//	a, err := pcapflow.Scan(ctx, []string{"x.pcap"}, nil)               // no index
//	a, err := pcapflow.OpenOrScan(ctx, []string{"x.pcap"}, nil)         // x.pcap.pfidx if there is one
//	defer a.Close()
//
// # Questions
//
// A [Query] holds a filter in the language of docs/query.md (tcpdump's
// spellings work: "tcp port 80 and not net 10.0.0.0/8"), an order and a
// window. [Archive.Flows] and [Archive.Conversations] are iterators;
// [Archive.Count] and [Archive.Explain] summarize:
//
//	for f, err := range a.Flows(ctx, pcapflow.Query{Filter: "tcp port 443", Sort: pcapflow.SortBytes, Reverse: true, Limit: 10}) {
//		if err != nil { ... }                     // a *SyntaxError has the offset
//		fmt.Println(f.ID, f.Key.SrcAddr(), f.Bytes, f.State)
//	}
//
// A filter that does not parse is a *[SyntaxError]; an index whose
// capture changed is a *[StaleError] (one that only grew is answered for
// what was read of it: [Archive.Grown]); other failures are the Err
// values of this package, to be tested with errors.Is.
//
// # Packets and streams
//
// [Archive.Extract] writes the packets of flows to an io.Writer as a
// capture (pcap or pcapng, chosen from the captures), each record byte
// for byte and once, in capture order. [Archive.WriteStreams] and
// [Archive.StreamsToDir] reassemble TCP streams (and UDP payloads) with
// an explicit policy for gaps and overlaps; [Archive.Follow] returns a
// conversation's two directions as Wireshark's Follow TCP Stream shows
// them. A flow inside a tunnel is reassembled from what the tunnel
// carries, with no option to set. [Archive.CreateOutput] writes a file
// so that a failure leaves nothing behind and an input is never
// overwritten.
//
// # Concurrency
//
// An Archive is safe for use by many goroutines. An index may be open in
// many processes while one process adds captures to it with [Index]
// (another Index on the same directory fails with [ErrInUse]); readers
// see the archive as it was when they opened it.
package pcapflow
