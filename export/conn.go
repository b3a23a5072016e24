// Package export turns an archive's conversations into the records the
// engines of a fleet read: Zeek conn.log's columns, as Parquet files
// partitioned by day for DuckDB, Trino, Spark or ClickHouse over object
// storage, and as conn.log JSON lines for Zeek-based tooling. Each row
// keeps the way back to the packets: the sensor, the two flow IDs and
// the capture (pcapflow extract -i URL-of-sensor flow N). docs/fleet.md
// is the path end to end.
package export

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/big"
	"strconv"
	"time"

	"github.com/pcapflow/pcapflow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// Conn is one conversation as a row of Zeek's conn.log, with the columns
// that lead back to its packets. Field names and meanings are Zeek's
// (docs/fleet.md says where they differ and why).
type Conn struct {
	TS            time.Time `parquet:"ts,timestamp(microsecond),delta"`
	UID           string    `parquet:"uid,delta"`
	OrigH         string    `parquet:"id.orig_h,dict"`
	OrigP         int32     `parquet:"id.orig_p"`
	RespH         string    `parquet:"id.resp_h,dict"`
	RespP         int32     `parquet:"id.resp_p"`
	Proto         string    `parquet:"proto,dict"`
	Service       *string   `parquet:"service,optional,dict"`
	Duration      float64   `parquet:"duration,split"`
	OrigBytes     int64     `parquet:"orig_bytes"`
	RespBytes     int64     `parquet:"resp_bytes"`
	ConnState     string    `parquet:"conn_state,dict"`
	MissedBytes   int64     `parquet:"missed_bytes"`
	History       string    `parquet:"history,dict"`
	OrigPkts      int64     `parquet:"orig_pkts"`
	OrigIPBytes   int64     `parquet:"orig_ip_bytes"`
	RespPkts      int64     `parquet:"resp_pkts"`
	RespIPBytes   int64     `parquet:"resp_ip_bytes"`
	TunnelParents []string  `parquet:"tunnel_parents,list"`
	CommunityID   string    `parquet:"community_id"`
	Sensor        string    `parquet:"sensor,dict"`
	OrigFlow      int64     `parquet:"orig_flow,delta"`
	RespFlow      *int64    `parquet:"resp_flow,optional"`
	Capture       string    `parquet:"capture,dict"`
	VLAN          []int32   `parquet:"vlan,list"`
}

// Converter makes Conn rows of one archive's conversations.
type Converter struct {
	a      *pcapflow.Archive
	sensor string
	seed   [32]byte
	outer  map[uint64]string // uid of the conversation of an outer flow
	links  []int             // link header length of each capture's first interface
}

// NewConverter prepares rows for the archive; sensor names the machine
// that holds it. The uid of a conversation is a hash of the archive's
// first capture (its content, not its name) and the conversation's ID:
// the same for the same index, run after run, and different between
// sensors.
func NewConverter(a *pcapflow.Archive, sensor string) *Converter {
	c := &Converter{a: a, sensor: sensor, outer: map[uint64]string{}}
	h := sha256.New() // the archive: its first capture's content and start
	if caps := a.Captures(); len(caps) > 0 {
		h.Write([]byte(caps[0].Identity))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(caps[0].First)))
	}
	copy(c.seed[:], h.Sum(nil))
	for _, cp := range a.Captures() {
		n := 0
		if len(cp.Layout.Interfaces) > 0 {
			n = linkHeader(cp.Layout.Interfaces[0].LinkType)
		}
		c.links = append(c.links, n)
	}
	return c
}

// linkHeader is the link-layer header of a link type, without VLAN tags.
func linkHeader(l pcapio.LinkType) int {
	switch l {
	case pcapio.LinkEthernet:
		return 14
	case pcapio.LinkLinuxSLL:
		return 16
	case pcapio.LinkLinuxSLL2:
		return 20
	case pcapio.LinkNull, pcapio.LinkLoop, pcapio.LinkPPP:
		return 4
	}
	return 0
}

// UID is a connection ID of Zeek's shape ("C" and 17 base-62 digits)
// for conversation conv: 7 digits of the archive's hash, then the
// conversation's ID in 10. Unlike Zeek's random ones they share a prefix
// per archive and count up, which Parquet's delta encoding stores in a
// byte or two instead of 13; 42 bits of archive hash keep them apart
// across a fleet.
func (c *Converter) UID(conv uint64) string {
	return "C" + base62(new(big.Int).SetBytes(c.seed[:8]), 7) + base62(new(big.Int).SetUint64(conv), 10)
}

// base62 is the last n base-62 digits of x, zero-padded.
func base62(x *big.Int, n int) string {
	s := x.Text(62)
	for len(s) < n {
		s = "0" + s
	}
	return s[len(s)-n:]
}

// Conn converts a conversation.
func (c *Converter) Conn(ctx context.Context, v *pcapflow.Conversation) Conn {
	a, b := v.A, v.B
	k := &a.Key
	first, last := v.Span()
	r := Conn{
		TS: time.Unix(0, first).UTC(), UID: c.UID(v.ID),
		OrigH: k.SrcAddr().String(), OrigP: int32(k.SrcPort), RespH: k.DstAddr().String(), RespP: int32(k.DstPort),
		Proto: zeekProto(k.Proto), Duration: float64(last-first) / 1e9,
		OrigBytes: int64(a.PayloadBytes), OrigPkts: int64(a.Packets), OrigIPBytes: c.ipBytes(a),
		MissedBytes: int64(a.MissingBytes), CommunityID: a.CommunityID(), Sensor: c.sensor,
		OrigFlow: int64(a.ID), Capture: c.a.CaptureName(a.Capture), TunnelParents: []string{}, VLAN: []int32{},
	}
	for _, id := range k.VLANs() {
		r.VLAN = append(r.VLAN, int32(id))
	}
	if b != nil {
		r.RespBytes, r.RespPkts, r.RespIPBytes = int64(b.PayloadBytes), int64(b.Packets), c.ipBytes(b)
		r.MissedBytes += int64(b.MissingBytes)
		id := int64(b.ID)
		r.RespFlow = &id
	}
	switch {
	case k.Proto == 6:
		r.ConnState, r.History = a.State.String(), a.History.String()
	case b == nil:
		r.ConnState, r.History = "S0", udpHistory(a, nil)
	default:
		r.ConnState, r.History = "SF", udpHistory(a, b)
	}
	if a.Depth > 0 && a.Outer != 0 {
		r.TunnelParents = []string{c.outerUID(ctx, a.Outer)}
	}
	return r
}

// outerUID is the uid of the conversation an outer flow belongs to.
func (c *Converter) outerUID(ctx context.Context, outer uint64) string {
	if u, ok := c.outer[outer]; ok {
		return u
	}
	conv := outer
	if f, err := c.a.Flow(ctx, outer); err == nil && f.Peer != 0 {
		conv = min(outer, f.Peer)
	}
	u := c.UID(conv)
	c.outer[outer] = u
	return u
}

// ipBytes is the flow's bytes without each packet's link header.
func (c *Converter) ipBytes(f *pcapflow.Flow) int64 {
	hdr := 0
	if f.Capture >= 0 && f.Capture < len(c.links) {
		hdr = c.links[f.Capture]
	}
	if hdr == 14 {
		hdr += 4 * len(f.Key.VLANs())
	}
	return max(0, int64(f.Bytes)-int64(hdr)*int64(f.Packets))
}

func zeekProto(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1, 58:
		return "icmp"
	}
	return "unknown_transport"
}

// udpHistory is Zeek's history of a connection without TCP: D for data
// from the originator, d from the responder.
func udpHistory(a, b *pcapflow.Flow) string {
	h := ""
	if a.PayloadBytes > 0 {
		h += "D"
	}
	if b != nil && b.PayloadBytes > 0 {
		h += "d"
	}
	return h
}

// WriteConnJSON writes the conversations of q as conn.log JSON lines
// (flows -F zeek, and the server's), with sensor as their sensor.
// w is written in pieces of many lines; it is not flushed.
func WriteConnJSON(ctx context.Context, w io.Writer, a *pcapflow.Archive, q pcapflow.Query, sensor string) error {
	conv := NewConverter(a, sensor)
	var b []byte
	for c, err := range a.Conversations(ctx, q) {
		if err != nil {
			return err
		}
		r := conv.Conn(ctx, c)
		b = r.AppendJSON(b)
		if len(b) >= 64<<10 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	_, err := w.Write(b)
	return err
}

// AppendJSON appends the row as a conn.log JSON line, as Zeek's JSON
// writer prints it: ts as epoch seconds, the columns in order, unset
// ones left out.
func (r *Conn) AppendJSON(b []byte) []byte {
	key := func(k string) {
		b = append(b, ',', '"')
		b = append(b, k...)
		b = append(b, '"', ':')
	}
	str := func(k, v string) { key(k); b = strconv.AppendQuote(b, v) }
	num := func(k string, v int64) { key(k); b = strconv.AppendInt(b, v, 10) }
	list := func(k string, n int, item func(i int)) { // left out when empty
		if n == 0 {
			return
		}
		key(k)
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			item(i)
		}
		b = append(b, ']')
	}
	b = append(b, `{"ts":`...)
	b = strconv.AppendFloat(b, float64(r.TS.UnixNano())/1e9, 'f', 6, 64)
	str("uid", r.UID)
	str("id.orig_h", r.OrigH)
	num("id.orig_p", int64(r.OrigP))
	str("id.resp_h", r.RespH)
	num("id.resp_p", int64(r.RespP))
	str("proto", r.Proto)
	if r.Service != nil {
		str("service", *r.Service)
	}
	b = append(b, `,"duration":`...)
	b = strconv.AppendFloat(b, r.Duration, 'f', 6, 64)
	num("orig_bytes", r.OrigBytes)
	num("resp_bytes", r.RespBytes)
	str("conn_state", r.ConnState)
	num("missed_bytes", r.MissedBytes)
	str("history", r.History)
	num("orig_pkts", r.OrigPkts)
	num("orig_ip_bytes", r.OrigIPBytes)
	num("resp_pkts", r.RespPkts)
	num("resp_ip_bytes", r.RespIPBytes)
	list("tunnel_parents", len(r.TunnelParents), func(i int) { b = strconv.AppendQuote(b, r.TunnelParents[i]) })
	str("community_id", r.CommunityID)
	str("sensor", r.Sensor)
	num("orig_flow", r.OrigFlow)
	if r.RespFlow != nil {
		num("resp_flow", *r.RespFlow)
	}
	str("capture", r.Capture)
	list("vlan", len(r.VLAN), func(i int) { b = strconv.AppendInt(b, int64(r.VLAN[i]), 10) })
	return append(b, "}\n"...)
}
