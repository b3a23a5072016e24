package index

import (
	"context"
	"errors"
	"net/netip"

	"github.com/pcapflow/pcapflow/flow"
)

// Reader is what queries, listings and extraction need from an index.
// The Pebble store (Open) and a scan's in-memory index (Scan) both
// implement it and give identical answers. Flow IDs are dense: 1..NumFlows.
// Implementations are safe for concurrent use.
type Reader interface {
	// Captures lists the captures, in index order.
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
	// Packets appends the records of a flow, in capture order.
	Packets(id uint64, out []PacketRef) ([]PacketRef, error)
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
	FieldSrcMAC                     // MAC
	FieldDstMAC                     // MAC
	FieldFirst                      // first packet time, ns, Lo..Hi (as int64 in uint64 bits)
	FieldLast                       // last packet time
	FieldPackets                    // Lo..Hi
	FieldBytes                      // Lo..Hi
	FieldCommunity                  // Community string
	FieldTunnel                     // tunnel type, Lo..Hi
	FieldTunnelID                   // tunnel ID (VNI, GRE key), Lo..Hi
)

// Lookup asks for the flows whose field lies in a range. Ranges are
// inclusive. For times, Lo and Hi hold int64 nanoseconds.
type Lookup struct {
	Field          Field
	AddrLo, AddrHi netip.Addr
	Lo, Hi         uint64
	MAC            [6]byte
	Community      string
}

// Matches evaluates the lookup against one flow record: the reference
// semantics every index must agree with.
func (l *Lookup) Matches(f *flow.Flow) bool {
	k := &f.Key
	switch l.Field {
	case FieldSrcAddr:
		return addrIn(k.SrcAddr(), l.AddrLo, l.AddrHi)
	case FieldDstAddr:
		return addrIn(k.DstAddr(), l.AddrLo, l.AddrHi)
	case FieldSrcPort:
		return k.HasPorts() && uint64(k.SrcPort) >= l.Lo && uint64(k.SrcPort) <= l.Hi && portProto(k.Proto)
	case FieldDstPort:
		return k.HasPorts() && uint64(k.DstPort) >= l.Lo && uint64(k.DstPort) <= l.Hi && portProto(k.Proto)
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

// portProto reports whether port primitives apply to a protocol: TCP,
// UDP and SCTP have ports; ICMP's type and code do not count as ports.
func portProto(p uint8) bool { return p == 6 || p == 17 || p == 132 }

func addrIn(a, lo, hi netip.Addr) bool {
	return a.BitLen() == lo.BitLen() && a.Compare(lo) >= 0 && a.Compare(hi) <= 0
}
