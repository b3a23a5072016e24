package index

import (
	"context"
	"encoding/binary"
	"errors"
	"math/bits"
	"net/netip"

	"github.com/pcapflow/pcapflow/flow"
)

// Reader is what queries, listings and extraction need from an index.
// The Pebble store (Open) and a scan's in-memory index (Scan) both
// implement it and give identical answers. Flow IDs are dense:
// 1..NumFlows. Implementations are safe for concurrent use.
type Reader interface {
	// Captures lists the captures in the order they were read.
	Captures() []CaptureInfo
	// NumFlows is the number of flows; IDs run from 1 to NumFlows.
	NumFlows() uint64
	// Flows calls fn for the flows whose IDs are in ids (ascending), or
	// for every flow when ids is nil. The *Flow is only valid during fn.
	Flows(ctx context.Context, ids []uint64, fn func(*flow.Flow) error) error
	// Lookup returns the IDs (ascending) of the flows that may match l:
	// every flow that matches is returned; when exact is false some
	// returned flows may not match and must be checked against records.
	Lookup(ctx context.Context, l Lookup) (ids []uint64, exact bool, err error)
	// Estimate returns an upper bound of the number of IDs Lookup would
	// return, cheaply; an index without attribute keys returns NumFlows
	// (its lookups read every record anyway).
	Estimate(ctx context.Context, l Lookup) (uint64, error)
	// Indexed reports whether lookups read attribute keys (an index on
	// disk) rather than every flow record (a scan): a planner then
	// orders and skips them.
	Indexed() bool
	// InCapture returns the IDs (ascending) of the flows with packets
	// in capture i.
	InCapture(ctx context.Context, i int) ([]uint64, error)
	// PacketsOf calls fn with the records of each flow of ids
	// (ascending), in the order they were read. refs is valid only
	// during fn.
	PacketsOf(ctx context.Context, ids []uint64, fn func(id uint64, refs []PacketRef) error) error
	// Checkpoints returns chunk n of capture i's record offsets: the
	// offsets of records n*CheckpointEvery*1024, and every
	// CheckpointEvery-th after, up to 1024 of them.
	Checkpoints(ctx context.Context, i, n int) ([]int64, error)
	// CapturePath locates capture i for reading its records, checking
	// that it is still the file that was indexed.
	CapturePath(i int) (string, error)
	Close() error
}

// ErrNoFlow is returned for a flow ID outside 1..NumFlows.
var ErrNoFlow = errors.New("no such flow")

// Field names what a Lookup looks at.
type Field uint8

const (
	FieldSrcAddr   Field = iota + 1 // address range AddrLo..AddrHi
	FieldDstAddr                    // address range
	FieldSrcPort                    // Lo..Hi
	FieldDstPort                    // Lo..Hi
	FieldProto                      // Lo..Hi
	FieldVLAN                       // Lo..Hi: any tag of the stack
	FieldSrcMAC                     // MAC (first seen)
	FieldDstMAC                     // MAC
	FieldFirst                      // first packet time, ns, Lo..Hi (as int64 in uint64 bits)
	FieldLast                       // last packet time
	FieldPackets                    // Lo..Hi
	FieldBytes                      // Lo..Hi
	FieldCommunity                  // Community string
	FieldTunnel                     // tunnel type, Lo..Hi
	FieldTunnelID                   // tunnel ID (VNI, GRE key), Lo..Hi
	numFields
	// fieldPaired is not looked up: its one list (value of width 0) holds
	// the responder flows that are not in the address, port and MAC
	// lists, being their originator's mirror (startAttrs.add).
	fieldPaired = Field(64)
)

// Fields lists every field, for tests that run each through every index.
var Fields = []Field{FieldSrcAddr, FieldDstAddr, FieldSrcPort, FieldDstPort, FieldProto, FieldVLAN,
	FieldSrcMAC, FieldDstMAC, FieldFirst, FieldLast, FieldPackets, FieldBytes, FieldCommunity,
	FieldTunnel, FieldTunnelID}

var fieldNames = [...]string{"", "src-addr", "dst-addr", "src-port", "dst-port", "proto", "vlan",
	"src-mac", "dst-mac", "first", "last", "packets", "bytes", "community", "tunnel", "tunnel-id"}

func (f Field) String() string {
	if f < numFields {
		return fieldNames[f]
	}
	return "field?"
}

// Lookup asks for the flows whose field lies in a range. Ranges are
// inclusive. For times, Lo and Hi hold int64 nanoseconds.
type Lookup struct {
	Field          Field
	AddrLo, AddrHi netip.Addr
	Lo, Hi         uint64
	MAC            [6]byte
	Community      string
	// Either also takes the other direction's field, for an address,
	// port or MAC: a flow matches when its source or its destination
	// does (tcpdump's "port 80" without src or dst). One lookup reads
	// each direction's lists once; the two lookups of the directions
	// united would read each twice, once for itself and once for the
	// paired responders of the other (Store.Lookup).
	Either bool
}

// Matches evaluates the lookup against one flow record: the reference
// semantics every index must agree with.
func (l *Lookup) Matches(f *flow.Flow) bool {
	if l.matches(l.Field, f) {
		return true
	}
	if !l.Either {
		return false
	}
	m, ok := mirrorField(l.Field)
	return ok && l.matches(m, f)
}

// matches evaluates the lookup's range on field fd of f.
func (l *Lookup) matches(fd Field, f *flow.Flow) bool {
	k := &f.Key
	switch fd {
	case FieldSrcAddr:
		return addrIn(k.SrcAddr(), l.AddrLo, l.AddrHi)
	case FieldDstAddr:
		return addrIn(k.DstAddr(), l.AddrLo, l.AddrHi)
	case FieldSrcPort:
		return flow.PortProto(k.Proto) && uint64(k.SrcPort) >= l.Lo && uint64(k.SrcPort) <= l.Hi
	case FieldDstPort:
		return flow.PortProto(k.Proto) && uint64(k.DstPort) >= l.Lo && uint64(k.DstPort) <= l.Hi
	case FieldProto:
		return uint64(k.Proto) >= l.Lo && uint64(k.Proto) <= l.Hi
	case FieldVLAN:
		for _, v := range k.VLANs() {
			if uint64(v) >= l.Lo && uint64(v) <= l.Hi {
				return true
			}
		}
		return false
	case FieldSrcMAC:
		return f.HasSrcMAC && f.SrcMAC == l.MAC
	case FieldDstMAC:
		return f.HasDstMAC && f.DstMAC == l.MAC
	case FieldFirst:
		return f.First >= int64(l.Lo) && f.First <= int64(l.Hi)
	case FieldLast:
		return f.Last >= int64(l.Lo) && f.Last <= int64(l.Hi)
	case FieldPackets:
		return f.Packets >= l.Lo && f.Packets <= l.Hi
	case FieldBytes:
		return f.Bytes >= l.Lo && f.Bytes <= l.Hi
	case FieldCommunity:
		return f.CommunityID() == l.Community
	case FieldTunnel:
		return k.TunnelType != 0 && uint64(k.TunnelType) >= l.Lo && uint64(k.TunnelType) <= l.Hi
	case FieldTunnelID:
		return k.TunnelType != 0 && uint64(k.TunnelID) >= l.Lo && uint64(k.TunnelID) <= l.Hi
	}
	return false
}

func addrIn(a, lo, hi netip.Addr) bool {
	return a.BitLen() == lo.BitLen() && a.Compare(lo) >= 0 && a.Compare(hi) <= 0
}

// Values of ID-list fields, fixed width within a field so that a range
// of values is a range of keys:
//
//	port, VLAN, Community ID bucket   u16
//	protocol, tunnel type             u8
//	tunnel ID                         u32
//	MAC                               6 bytes
//	first/last time                   minute number (ns / 60e9, floored), int64 with the sign bit flipped
//	packets/bytes                     bit length of the count (a log2 bucket), u8
//
// Buckets (time, packets, bytes, community) make those lookups inexact:
// flows in a boundary bucket are checked against their records.

// fieldWidth is the width of a field's values in list keys.
func fieldWidth(f Field) int {
	switch f {
	case FieldSrcPort, FieldDstPort, FieldVLAN, FieldCommunity:
		return 2
	case FieldProto, FieldTunnel, FieldPackets, FieldBytes:
		return 1
	case FieldTunnelID:
		return 4
	case FieldSrcMAC, FieldDstMAC:
		return 6
	case FieldFirst, FieldLast:
		return 8
	}
	return 0
}

// finalField reports whether a field's value is known only when the
// flow ends (B keys) rather than when it starts (A keys). The first
// time is among them: a fragment held back until its datagram's first
// fragment came can move it earlier.
func finalField(f Field) bool {
	return f == FieldFirst || f == FieldLast || f == FieldPackets || f == FieldBytes
}

func u16Value(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func minute(ns int64) int64 {
	m := ns / timeBucket
	if ns < 0 && ns%timeBucket != 0 {
		m-- // floor, so that buckets keep time order across the epoch
	}
	return m
}

func timeValue(ns int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(minute(ns))^(1<<63))
}

// log2Value buckets a count by its bit length: 0, 1, 2-3, 4-7, ...
func log2Value(n uint64) []byte { return []byte{byte(bits.Len64(n))} }
