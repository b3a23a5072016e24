// Package query is pcapflow's filter language: a participle grammar, a
// typed AST whose nodes print their normal form and match flow records,
// and a planner that answers an expression from an index's attribute
// lookups, set operations and a residual check.
//
// The language follows tcpdump where it can: host, net (CIDR or mask),
// port, portrange, with src/dst qualifiers; proto and the protocol words;
// vlan; ether host; and/or/not (also && || !) and parentheses, with not
// binding tighter than and, and tighter than or. pcapflow adds flow IDs
// and ranges, after/before, packets and bytes comparisons (K/M/G
// suffixes) and Community IDs. docs/query.md is the reference.
package query

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/pcapio"
)

// Expr is a node of a parsed filter.
type Expr interface {
	// String prints the normal form; parsing it gives the same Expr.
	String() string
	// Match evaluates the expression on one flow record.
	Match(f *flow.Flow) bool
}

// And, Or and Not combine expressions.
type (
	And struct{ L, R Expr }
	Or  struct{ L, R Expr }
	Not struct{ X Expr }
)

func (e *And) String() string { return paren(e.L, e) + " and " + paren(e.R, e) }
func (e *Or) String() string  { return orOperand(e.L) + " or " + orOperand(e.R) }

// orOperand parenthesizes an 'and' under an 'or', so that the normal
// form means the same to tcpdump, whose 'and' and 'or' have equal
// precedence, and parses again (see converter.or).
func orOperand(x Expr) string {
	if _, ok := x.(*And); ok {
		return "(" + x.String() + ")"
	}
	return x.String()
}
func (e *Not) String() string { return "not " + paren(e.X, e) }

func (e *And) Match(f *flow.Flow) bool { return e.L.Match(f) && e.R.Match(f) }
func (e *Or) Match(f *flow.Flow) bool  { return e.L.Match(f) || e.R.Match(f) }
func (e *Not) Match(f *flow.Flow) bool { return !e.X.Match(f) }

// paren wraps a child in parentheses where precedence needs them.
func paren(child, parent Expr) string {
	switch child.(type) {
	case *Or:
		return "(" + child.String() + ")"
	case *And:
		if _, ok := parent.(*Not); ok {
			return "(" + child.String() + ")"
		}
	}
	return child.String()
}

// Dir is a src/dst qualifier.
type Dir uint8

const (
	DirEither Dir = iota // src or dst (the default)
	DirSrc
	DirDst
	DirBoth // src and dst
)

func (d Dir) prefix() string {
	switch d {
	case DirSrc:
		return "src "
	case DirDst:
		return "dst "
	case DirBoth:
		return "src and dst "
	}
	return ""
}

// match combines the source and destination tests per the qualifier.
func (d Dir) match(src, dst func() bool) bool {
	switch d {
	case DirSrc:
		return src()
	case DirDst:
		return dst()
	case DirBoth:
		return src() && dst()
	}
	return src() || dst()
}

// FlowRange selects flows by ID.
type FlowRange struct{ Lo, Hi uint64 }

func (e *FlowRange) String() string {
	if e.Lo == e.Hi {
		return fmt.Sprintf("flow %d", e.Lo)
	}
	return fmt.Sprintf("flow %d-%d", e.Lo, e.Hi)
}
func (e *FlowRange) Match(f *flow.Flow) bool { return f.ID >= e.Lo && f.ID <= e.Hi }

// Net selects flows by address: a host is a full-length prefix.
type Net struct {
	Dir    Dir
	Prefix netip.Prefix
	Host   bool // written as host
}

func (e *Net) String() string {
	if e.Host {
		return e.Dir.prefix() + "host " + e.Prefix.Addr().String()
	}
	return e.Dir.prefix() + "net " + e.Prefix.String()
}

func (e *Net) Match(f *flow.Flow) bool {
	return e.Dir.match(func() bool { return e.Prefix.Contains(f.Key.SrcAddr()) },
		func() bool { return e.Prefix.Contains(f.Key.DstAddr()) })
}

// Port selects TCP, UDP and SCTP flows by port or port range.
type Port struct {
	Dir    Dir
	Lo, Hi uint16
	Range  bool // written as portrange
}

func (e *Port) String() string {
	if e.Range {
		return fmt.Sprintf("%sportrange %d-%d", e.Dir.prefix(), e.Lo, e.Hi)
	}
	return fmt.Sprintf("%sport %d", e.Dir.prefix(), e.Lo)
}

func (e *Port) Match(f *flow.Flow) bool {
	k := &f.Key
	if k.Proto != 6 && k.Proto != 17 && k.Proto != 132 {
		return false
	}
	return e.Dir.match(func() bool { return k.SrcPort >= e.Lo && k.SrcPort <= e.Hi },
		func() bool { return k.DstPort >= e.Lo && k.DstPort <= e.Hi })
}

// Proto selects flows by IP protocol number.
type Proto struct{ N uint8 }

func (e *Proto) String() string {
	switch e.N {
	case 6, 17, 1, 58, 132:
		return flow.ProtoName(e.N)
	}
	return fmt.Sprintf("proto %d", e.N)
}
func (e *Proto) Match(f *flow.Flow) bool { return f.Key.Proto == e.N }

// IPVersion selects IPv4 (ip) or IPv6 (ip6) flows.
type IPVersion struct{ V uint8 }

func (e *IPVersion) String() string {
	if e.V == 6 {
		return "ip6"
	}
	return "ip"
}
func (e *IPVersion) Match(f *flow.Flow) bool { return f.Key.IPVersion == e.V }

// VLAN selects flows with a VLAN tag (any tag of the stack) of an ID,
// or, with Any, flows with any tag.
type VLAN struct {
	ID  uint16
	Any bool
}

func (e *VLAN) String() string {
	if e.Any {
		return "vlan"
	}
	return fmt.Sprintf("vlan %d", e.ID)
}

func (e *VLAN) Match(f *flow.Flow) bool {
	if e.Any {
		return f.Key.NumVLAN > 0
	}
	for _, v := range f.Key.VLANs() {
		if v == e.ID {
			return true
		}
	}
	return false
}

// Ether selects flows by the MAC addresses first seen on them.
type Ether struct {
	Dir Dir
	MAC [6]byte
}

func (e *Ether) String() string {
	return "ether " + e.Dir.prefix() + "host " + net.HardwareAddr(e.MAC[:]).String()
}

func (e *Ether) Match(f *flow.Flow) bool {
	return e.Dir.match(func() bool { return f.HasSrcMAC && f.SrcMAC == e.MAC },
		func() bool { return f.HasDstMAC && f.DstMAC == e.MAC })
}

// Time selects flows active after a time (last packet at or after it) or
// before it (first packet before it).
type Time struct {
	After bool
	T     time.Time
}

func (e *Time) String() string {
	w := "before "
	if e.After {
		w = "after "
	}
	return w + e.T.UTC().Format(time.RFC3339Nano)
}

func (e *Time) Match(f *flow.Flow) bool {
	if e.After {
		return f.Last >= e.T.UnixNano()
	}
	return f.First < e.T.UnixNano()
}

// Count compares a flow's packets or bytes with a number.
type Count struct {
	Bytes bool
	Op    string // > >= < <= == !=
	N     uint64
}

func (e *Count) String() string {
	w := "packets"
	if e.Bytes {
		w = "bytes"
	}
	return fmt.Sprintf("%s %s %d", w, e.Op, e.N)
}

func (e *Count) Match(f *flow.Flow) bool {
	v := f.Packets
	if e.Bytes {
		v = f.Bytes
	}
	switch e.Op {
	case ">":
		return v > e.N
	case ">=":
		return v >= e.N
	case "<":
		return v < e.N
	case "<=":
		return v <= e.N
	case "!=":
		return v != e.N
	}
	return v == e.N
}

// bounds is the inclusive range of counts the comparison accepts; ok is
// false for != (two ranges).
func (e *Count) bounds() (lo, hi uint64, ok bool) {
	const maxU = ^uint64(0)
	switch e.Op {
	case ">":
		if e.N == maxU {
			return 1, 0, true // empty
		}
		return e.N + 1, maxU, true
	case ">=":
		return e.N, maxU, true
	case "<":
		if e.N == 0 {
			return 1, 0, true
		}
		return 0, e.N - 1, true
	case "<=":
		return 0, e.N, true
	case "!=":
		return 0, 0, false
	}
	return e.N, e.N, true
}

// Community selects the flows of a connection by its Community ID.
type Community struct{ ID string }

func (e *Community) String() string          { return "community " + e.ID }
func (e *Community) Match(f *flow.Flow) bool { return f.CommunityID() == e.ID }

// services maps the port names tcpdump users type to numbers.
var services = map[string]uint16{
	"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "dns": 53, "bootps": 67,
	"bootpc": 68, "tftp": 69, "http": 80, "kerberos": 88, "pop3": 110, "ntp": 123, "netbios": 139, "imap": 143,
	"snmp": 161, "ldap": 389, "https": 443, "smb": 445, "syslog": 514, "ldaps": 636, "imaps": 993, "pop3s": 995,
	"mssql": 1433, "mysql": 3306, "rdp": 3389, "postgres": 5432, "redis": 6379, "http-alt": 8080,
}

// protocols maps protocol names to numbers.
var protocols = map[string]uint8{
	"icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6": 41, "rsvp": 46, "gre": 47,
	"esp": 50, "ah": 51, "icmp6": 58, "icmpv6": 58, "ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132,
}

// lookups returns the index lookups of a primitive whose union is its
// candidate set (nil, false for primitives that are not lookups).
func lookups(e Expr) ([]index.Lookup, bool) {
	addr := func(d Dir, fs, fd index.Field, mk func(index.Field) index.Lookup) []index.Lookup {
		switch d {
		case DirSrc:
			return []index.Lookup{mk(fs)}
		case DirDst:
			return []index.Lookup{mk(fd)}
		case DirBoth: // intersected (planner.eval)
			return []index.Lookup{mk(fs), mk(fd)}
		}
		l := mk(fs)
		l.Either = true
		return []index.Lookup{l}
	}
	switch e := e.(type) {
	case *Net:
		lo := e.Prefix.Masked().Addr()
		hi := lastAddr(e.Prefix)
		return addr(e.Dir, index.FieldSrcAddr, index.FieldDstAddr, func(f index.Field) index.Lookup {
			return index.Lookup{Field: f, AddrLo: lo, AddrHi: hi}
		}), true
	case *Port:
		return addr(e.Dir, index.FieldSrcPort, index.FieldDstPort, func(f index.Field) index.Lookup {
			return index.Lookup{Field: f, Lo: uint64(e.Lo), Hi: uint64(e.Hi)}
		}), true
	case *Ether:
		return addr(e.Dir, index.FieldSrcMAC, index.FieldDstMAC, func(f index.Field) index.Lookup {
			return index.Lookup{Field: f, MAC: e.MAC}
		}), true
	case *Proto:
		return []index.Lookup{{Field: index.FieldProto, Lo: uint64(e.N), Hi: uint64(e.N)}}, true
	case *VLAN:
		if e.Any {
			return []index.Lookup{{Field: index.FieldVLAN, Lo: 0, Hi: 0xfff}}, true
		}
		return []index.Lookup{{Field: index.FieldVLAN, Lo: uint64(e.ID), Hi: uint64(e.ID)}}, true
	case *Time:
		ns := e.T.UnixNano()
		if e.After {
			return []index.Lookup{{Field: index.FieldLast, Lo: bitsOf(ns), Hi: bitsOf(math.MaxInt64)}}, true
		}
		return []index.Lookup{{Field: index.FieldFirst, Lo: bitsOf(math.MinInt64), Hi: bitsOf(ns - 1)}}, true
	case *Count:
		lo, hi, ok := e.bounds()
		if !ok {
			return nil, false
		}
		f := index.FieldPackets
		if e.Bytes {
			f = index.FieldBytes
		}
		if lo > hi {
			return []index.Lookup{}, true
		}
		return []index.Lookup{{Field: f, Lo: lo, Hi: hi}}, true
	case *Community:
		return []index.Lookup{{Field: index.FieldCommunity, Community: e.ID}}, true
	case *Tunnel:
		if e.Type == 0 {
			return []index.Lookup{{Field: index.FieldTunnel, Lo: 1, Hi: 255}}, true
		}
		return []index.Lookup{{Field: index.FieldTunnel, Lo: uint64(e.Type), Hi: uint64(e.Type)}}, true
	case *VNI:
		return []index.Lookup{{Field: index.FieldTunnelID, Lo: uint64(e.ID), Hi: uint64(e.ID)}}, true
	case *Nesting:
		if e.Inner {
			return []index.Lookup{{Field: index.FieldTunnel, Lo: 1, Hi: 255}}, true
		}
	}
	return nil, false
}

// bitsOf stores a time in a Lookup's uint64 bounds.
func bitsOf(ns int64) uint64 { return uint64(ns) }

// lastAddr is the highest address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.AsSlice()
	bits := p.Bits()
	for i := bits; i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	r, _ := netip.AddrFromSlice(b)
	return r
}

func parseSize(s string) (uint64, bool) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, "b"), "B")
	mult := uint64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult = 1e3
		case 'm', 'M':
			mult = 1e6
		case 'g', 'G':
			mult = 1e9
		case 't', 'T':
			mult = 1e12
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	if i, err := strconv.ParseUint(s, 10, 64); err == nil {
		if mult > 1 && i > ^uint64(0)/mult {
			return 0, false
		}
		return i * mult, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*float64(mult) > 1.8e19 {
		return 0, false
	}
	return uint64(f * float64(mult)), true
}

// Tunnel selects flows carried in a tunnel, of any type or of one.
type Tunnel struct{ Type pcapio.TunnelType }

func (e *Tunnel) String() string {
	if e.Type == 0 {
		return "tunnel"
	}
	return "tunnel " + e.Type.String()
}

func (e *Tunnel) Match(f *flow.Flow) bool {
	return f.Key.TunnelType != 0 && (e.Type == 0 || f.Key.TunnelType == e.Type)
}

// VNI selects flows carried in a tunnel with this ID: a VXLAN or Geneve
// VNI, a GRE key, an ERSPAN session ID.
type VNI struct{ ID uint32 }

func (e *VNI) String() string { return fmt.Sprintf("vni %d", e.ID) }
func (e *VNI) Match(f *flow.Flow) bool {
	return f.Key.TunnelType != 0 && f.Key.TunnelID == e.ID
}

// Nesting selects flows carried in a tunnel (inner) or not (outer).
type Nesting struct{ Inner bool }

func (e *Nesting) String() string {
	if e.Inner {
		return "inner"
	}
	return "outer"
}
func (e *Nesting) Match(f *flow.Flow) bool { return (f.Depth > 0) == e.Inner }
