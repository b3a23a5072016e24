package flow

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
)

// Conversation is both directions of a connection: A is the flow seen
// first, B its peer (nil when only one direction was seen).
type Conversation struct {
	ID   uint64 // the smaller flow ID
	A, B *Flow
}

// ConvFields are the column names of --bidir output.
var ConvFields = []string{"conv", "a", "b", "aport", "bport", "proto", "a_to_b_packets", "a_to_b_bytes",
	"b_to_a_packets", "b_to_a_bytes", "first", "last", "flows"}

// ConvWriter prints conversations.
type ConvWriter struct {
	format Format
	bw     *bufio.Writer
	cw     *csv.Writer
	b      []byte
	header bool
}

// NewConvWriter returns a writer of conversations in the given format.
func NewConvWriter(w io.Writer, format Format) (*ConvWriter, error) {
	switch format {
	case FormatText, FormatJSON, FormatCSV:
	default:
		return nil, fmt.Errorf("unknown format %q (want text, json or csv)", format)
	}
	c := &ConvWriter{format: format, bw: bufio.NewWriterSize(w, 256<<10)}
	if format == FormatCSV {
		c.cw = csv.NewWriter(c.bw)
	}
	return c, nil
}

func (c *ConvWriter) Write(v *Conversation) error {
	a, b := v.A, v.B
	k := &a.Key
	var bp, bb uint64
	first, last := a.First, a.Last
	peer := uint64(0)
	if b != nil {
		bp, bb, peer = b.Packets, b.Bytes, b.ID
		first, last = min(first, b.First), max(last, b.Last)
	}
	switch c.format {
	case FormatJSON:
		x := c.b[:0]
		x = fmt.Appendf(x, `{"conv":%d,"a":"%s","b":"%s","aport":%d,"bport":%d,"proto":%q,"a_to_b_packets":%d,"a_to_b_bytes":%d,"b_to_a_packets":%d,"b_to_a_bytes":%d,"first":"`,
			v.ID, k.SrcAddr(), k.DstAddr(), k.SrcPort, k.DstPort, ProtoName(k.Proto), a.Packets, a.Bytes, bp, bb)
		x = AppendTime(x, first)
		x = append(x, `","last":"`...)
		x = AppendTime(x, last)
		x = fmt.Appendf(x, `","flows":[%d`, a.ID)
		if peer != 0 {
			x = fmt.Appendf(x, ",%d", peer)
		}
		x = append(x, "]}\n"...)
		c.b = x
		_, err := c.bw.Write(x)
		return err
	case FormatCSV:
		if !c.header {
			c.header = true
			c.cw.Write(ConvFields)
		}
		flows := strconv.FormatUint(a.ID, 10)
		if peer != 0 {
			flows += ";" + strconv.FormatUint(peer, 10)
		}
		u := func(x uint64) string { return strconv.FormatUint(x, 10) }
		return c.cw.Write([]string{u(v.ID), k.SrcAddr().String(), k.DstAddr().String(), u(uint64(k.SrcPort)), u(uint64(k.DstPort)),
			ProtoName(k.Proto), u(a.Packets), u(a.Bytes), u(bp), u(bb), string(AppendTime(nil, first)), string(AppendTime(nil, last)), flows})
	}
	x := c.b[:0]
	x = fmt.Appendf(x, "Conv: %8d | %-4s ", v.ID, upperProto(k.Proto))
	x = appendPaddedAddr(x, k.SrcAddr())
	x = fmt.Appendf(x, ":%-5d <-> ", k.SrcPort)
	x = appendPaddedAddr(x, k.DstAddr())
	x = fmt.Appendf(x, ":%-5d | %10d Pkts %14d Bytes -> | <- %10d Pkts %14d Bytes | ", k.DstPort, a.Packets, a.Bytes, bp, bb)
	x = AppendClock(x, first)
	x = append(x, " : "...)
	x = AppendDuration(x, last-first)
	x = append(x, '\n')
	c.b = x
	_, err := c.bw.Write(x)
	return err
}

// Flush writes buffered output.
func (c *ConvWriter) Flush() error {
	if c.cw != nil {
		if !c.header {
			c.header = true
			c.cw.Write(ConvFields)
		}
		c.cw.Flush()
		if err := c.cw.Error(); err != nil {
			return err
		}
	}
	return c.bw.Flush()
}
