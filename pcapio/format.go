package pcapio

import (
	"fmt"
	"math/bits"
)

// Format is the container format of a capture.
type Format uint8

const (
	FormatPcap   Format = 1 // classic libpcap
	FormatPcapNG Format = 2 // pcapng
)

func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapNG:
		return "pcapng"
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// LinkType is a LINKTYPE_ value from the tcpdump.org registry.
type LinkType uint16

// Link types the decoder understands. Others are read and written like any
// record but decode to "not IP".
const (
	LinkNull      LinkType = 0   // BSD loopback, host byte order family
	LinkEthernet  LinkType = 1   // Ethernet II / 802.3
	LinkPPP       LinkType = 9   // PPP, optionally with HDLC address/control
	LinkRawOld12  LinkType = 12  // DLT_RAW on OpenBSD and others
	LinkRawOld14  LinkType = 14  // DLT_RAW on some BSDs
	LinkPPPHDLC   LinkType = 50  // PPP in HDLC-like framing
	LinkRaw       LinkType = 101 // raw IPv4 or IPv6
	LinkCHDLC     LinkType = 104 // Cisco HDLC
	LinkLoop      LinkType = 108 // OpenBSD loopback, network byte order family
	LinkLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkIPv4      LinkType = 228 // raw IPv4
	LinkIPv6      LinkType = 229 // raw IPv6
	LinkLinuxSLL2 LinkType = 276 // Linux cooked capture v2
	LinkIEEE80211 LinkType = 105 // IEEE 802.11 without radio header
	LinkRadiotap  LinkType = 127 // IEEE 802.11 behind a radiotap header

	// linkMPLS is not a capture link type: it marks an MPLS label stack
	// carried by a tunnel.
	linkMPLS LinkType = 0xfff0
)

var linkNames = map[LinkType]string{
	LinkNull: "null", LinkEthernet: "ether", LinkPPP: "ppp", LinkRawOld12: "raw",
	LinkRawOld14: "raw", LinkPPPHDLC: "ppp-hdlc", LinkRaw: "raw", LinkCHDLC: "c-hdlc",
	LinkLoop: "loop", LinkLinuxSLL: "linux-sll", LinkIPv4: "rawip4", LinkIPv6: "rawip6",
	LinkLinuxSLL2: "linux-sll2", LinkIEEE80211: "ieee802.11", LinkRadiotap: "radiotap",
}

func (l LinkType) String() string {
	if s, ok := linkNames[l]; ok {
		return s
	}
	return fmt.Sprintf("linktype-%d", uint16(l))
}

// Layout is what a reader learned about a capture's structure: enough to
// read a record at an offset later and to write output files that keep the
// capture's link types and timestamp precision. It is small and is stored
// in an index beside each capture.
type Layout struct {
	Format     Format
	Sections   []Section   // pcap: exactly one
	Interfaces []Interface // every interface of every section, in file order
}

// Section is a pcap file header or a pcapng section header block.
type Section struct {
	Offset    int64  // byte offset of the header or SHB
	BigEndian bool   // byte order of every header in the section
	Raw       []byte // the header or SHB exactly as in the file
	// pcap only.
	Nanos     bool // nanosecond timestamps
	RecordHdr int  // 16, or 24 for the "modified" libpcap format
	// FirstInterface is the index in Layout.Interfaces of this section's
	// interface 0 (pcapng numbers interfaces per section).
	FirstInterface int
}

// Interface is a pcap file's one link or a pcapng interface description.
type Interface struct {
	Section  int
	LinkType LinkType
	SnapLen  uint32
	Offset   int64  // byte offset of the IDB (pcap: of the file header)
	Raw      []byte // the IDB exactly as in the file (nil for pcap)
	// TsResol is the pcapng if_tsresol option byte (6 = microseconds,
	// 9 = nanoseconds, high bit set = negative power of two).
	TsResol  uint8
	TsOffset int64 // if_tsoffset, seconds
}

// tsScale converts raw timestamp units of one interface to nanoseconds.
type tsScale struct {
	mul    uint64 // ns = units*mul ...
	div    uint64 // ... / div (1 when exact)
	shift  uint   // or, for power-of-two resolutions, ns = units*1e9 >> shift
	pow2   bool
	offset int64 // seconds to add
}

func newTsScale(resol uint8, offset int64) tsScale {
	s := tsScale{mul: 1, div: 1, offset: offset}
	if resol&0x80 != 0 {
		s.pow2 = true
		s.shift = uint(resol & 0x7f)
		return s
	}
	exp := int(resol)
	switch {
	case exp <= 9:
		for i := exp; i < 9; i++ {
			s.mul *= 10
		}
	default:
		for i := 9; i < exp && i < 28; i++ {
			s.div *= 10
		}
	}
	return s
}

func (s tsScale) nanos(units uint64) int64 {
	var ns uint64
	switch {
	case s.pow2:
		hi, lo := bits.Mul64(units, 1e9)
		if s.shift >= 64 {
			ns = hi >> (s.shift - 64)
		} else if s.shift == 0 {
			ns = lo
		} else {
			ns = lo>>s.shift | hi<<(64-s.shift)
		}
	case s.div == 1:
		ns = units * s.mul
	default:
		ns = units / s.div
	}
	return int64(ns) + s.offset*1e9
}

// Record is one captured packet.
type Record struct {
	// Index is the record's position among the capture's packet records
	// (0 for the first), as Reader counts them; an index refers to a
	// record by it. RecordReader sets it only when it walks from a
	// position with a known index (Walker).
	Index     int64
	Offset    int64 // byte offset of the record header or pcapng block
	Length    int   // bytes the record occupies in the file, header included
	CapLen    int   // captured bytes (len(Data))
	OrigLen   int   // length on the wire
	Timestamp int64 // nanoseconds since the Unix epoch, UTC
	LinkType  LinkType
	Interface int    // index into Layout.Interfaces
	Data      []byte // captured bytes; valid until the reader's next call
	// Raw is the whole record as it stands in the file (record header or
	// block, data, padding and options), for copying it verbatim. Valid
	// until the reader's next call.
	Raw []byte
}
