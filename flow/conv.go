package flow

import (
	"bufio"
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

// Span returns the conversation's first and last packet times.
func (v *Conversation) Span() (first, last int64) {
	first, last = v.A.First, v.A.Last
	if v.B != nil {
		first, last = min(first, v.B.First), max(last, v.B.Last)
	}
	return first, last
}

// ConvFields are the column names of --bidir output.
var ConvFields = []string{"conv", "a", "b", "aport", "bport", "proto", "vlan", "tunnel", "a_to_b_packets", "a_to_b_bytes",
	"b_to_a_packets", "b_to_a_bytes", "first", "last", "duration", "flows"}

// ConvWriter prints conversations.
type ConvWriter struct {
	format Format
	o      *WriterOptions
	bw     *bufio.Writer
	table  *tableWriter
	b      []byte
	header bool
}

// NewConvWriter returns a writer of conversations in the given format.
func NewConvWriter(w io.Writer, format Format, o *WriterOptions) (*ConvWriter, error) {
	if o == nil {
		o = &WriterOptions{}
	}
	c := &ConvWriter{format: format, o: o, bw: bufio.NewWriterSize(w, 256<<10)}
	switch format {
	case FormatText:
		cols := []column{{"CONV", true}, {"PROTO", false}, {"A", false}, {"APORT", true}, {"B", false}, {"BPORT", true},
			{"A>B PKTS", true}, {"A>B BYTES", true}, {"B>A PKTS", true}, {"B>A BYTES", true}, {"FIRST", false}, {"LAST", false},
			{"FLOWS", false}}
		if o.Captures {
			cols = append(cols, column{"CAPTURE", false})
		}
		cols = append(cols, column{"CONTEXT", false})
		c.table = newTableWriter(c.bw, cols, nil)
	case FormatSeed, FormatJSON, FormatCSV:
	default:
		return nil, formatError(format)
	}
	return c, nil
}

func (c *ConvWriter) Write(v *Conversation) error {
	a, b := v.A, v.B
	k := &a.Key
	var bp, bb uint64
	peer := uint64(0)
	if b != nil {
		bp, bb, peer = b.Packets, b.Bytes, b.ID
	}
	first, last := v.Span()
	u := func(x uint64) string { return strconv.FormatUint(x, 10) }
	flows := u(a.ID)
	if peer != 0 {
		flows += "," + u(peer)
	}
	x := c.b[:0]
	switch c.format {
	case FormatText:
		row := []string{u(v.ID), ProtoLabel(k.Proto), k.SrcAddr().String(), u(uint64(k.SrcPort)), k.DstAddr().String(), u(uint64(k.DstPort)),
			u(a.Packets), u(a.Bytes), u(bp), u(bb), tableTime(first, c.o.Location), tableTime(last, c.o.Location), flows}
		if c.o.Captures {
			row = append(row, c.o.name(a.Capture))
		}
		return c.table.writeCells(append(row, keyContext(k, a.Outer)))
	case FormatJSON:
		x = fmt.Appendf(x, `{"conv":%d,"a":"%s","b":"%s","aport":%d,"bport":%d,"proto":%q`,
			v.ID, k.SrcAddr(), k.DstAddr(), k.SrcPort, k.DstPort, ProtoName(k.Proto))
		x = appendKeyContextJSON(x, k, a.Outer, a.Depth)
		x = fmt.Appendf(x, `,"a_to_b_packets":%d,"a_to_b_bytes":%d,"b_to_a_packets":%d,"b_to_a_bytes":%d,"first":"`, a.Packets, a.Bytes, bp, bb)
		x = AppendTime(x, first)
		x = append(x, `","last":"`...)
		x = AppendTime(x, last)
		x = append(x, `","duration":`...)
		x = AppendSeconds(x, last-first)
		x = fmt.Appendf(x, `,"flows":[%s]}`+"\n", flows)
	case FormatCSV:
		if !c.header {
			c.header = true
			c.writeCSVHeader()
		}
		vlans := string(appendVLANs(nil, k, ';'))
		tunnel := ""
		if k.TunnelType != 0 {
			tunnel = fmt.Sprintf("%s:%d:%d", k.TunnelType, k.TunnelID, a.Outer)
		}
		for i, s := range []string{u(v.ID), k.SrcAddr().String(), k.DstAddr().String(), u(uint64(k.SrcPort)), u(uint64(k.DstPort)),
			ProtoName(k.Proto), vlans, tunnel, u(a.Packets), u(a.Bytes), u(bp), u(bb), string(AppendTime(nil, first)),
			string(AppendTime(nil, last)), string(AppendSeconds(nil, last-first)), flows} {
			if i > 0 {
				x = append(x, ',')
			}
			x = appendCSVField(x, s)
		}
		x = append(x, '\n')
	case FormatSeed:
		x = fmt.Appendf(x, "Conv: %8d | %-4s ", v.ID, upperProto(k.Proto))
		x = appendPaddedAddr(x, k.SrcAddr())
		x = fmt.Appendf(x, ":%-5d <-> ", k.SrcPort)
		x = appendPaddedAddr(x, k.DstAddr())
		x = fmt.Appendf(x, ":%-5d | %10d Pkts %14d Bytes -> | <- %10d Pkts %14d Bytes | ", k.DstPort, a.Packets, a.Bytes, bp, bb)
		x = AppendClock(x, first)
		x = append(x, " : "...)
		x = AppendDuration(x, last-first)
		if ctx := keyContext(k, a.Outer); ctx != "" {
			x = append(x, " | "...)
			x = append(x, ctx...)
		}
		x = append(x, '\n')
	}
	c.b = x
	_, err := c.bw.Write(x)
	return err
}

func (c *ConvWriter) writeCSVHeader() {
	for i, f := range ConvFields {
		if i > 0 {
			c.bw.WriteByte(',')
		}
		c.bw.WriteString(f)
	}
	c.bw.WriteByte('\n')
}

// Flush writes buffered output.
func (c *ConvWriter) Flush() error {
	switch {
	case c.table != nil:
		return c.table.Flush()
	case c.format == FormatCSV && !c.header:
		c.header = true
		c.writeCSVHeader()
	}
	return c.bw.Flush()
}
