// Package pcapio reads and writes packet captures and decodes packets down
// to the fields a flow key needs.
//
// Reading comes in two forms. [Reader] walks a capture front to back from
// any io.Reader (a file, stdin, or gzip/zstd compressed input, detected by
// magic) and yields every record with its byte offset and length in the
// capture. [RecordReader] reads one record at a known offset from an
// io.ReaderAt, which is how an index extracts a flow without rescanning the
// file. Both understand classic pcap (microsecond and nanosecond magics,
// both byte orders, the 24-byte-header variant written by patched libpcap)
// and pcapng (several sections and interfaces, EPB, SPB and OPB records,
// both byte orders).
//
// Record data is not copied: [Record.Data] points into the reader's buffer
// and is valid until the next call. A reader makes no allocation per
// record once its buffer has grown to the largest record.
//
// [Packet.Decode] parses link, network and transport headers in place,
// also without allocating: Ethernet with 802.1Q/802.1ad tag stacks and
// MPLS, Linux SLL and SLL2, raw IP, BSD loopback, PPP and Cisco HDLC;
// IPv4 with options and fragments, IPv6 with extension headers and
// fragments; TCP, UDP, ICMP and ICMPv6. Payload lengths come from the IP
// header, so Ethernet padding is never payload and a snaplen cut is known.
//
// Writers produce pcap and pcapng files; they copy original records
// verbatim where the formats allow it.
package pcapio
