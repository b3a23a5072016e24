package flow

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// protoLabels name IP protocols in the text table, as IANA's registry
// and tcpdump do; others print as their number.
var protoLabels = map[uint8]string{
	1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 46: "rsvp", 47: "gre",
	50: "esp", 51: "ah", 58: "icmp6", 88: "eigrp", 89: "ospf", 103: "pim", 112: "vrrp",
	115: "l2tp", 132: "sctp", 136: "udplite",
}

// ProtoLabel is the name of IP protocol p for people: tcp, udp, gre,
// esp, ospf...; its number when it has none.
func ProtoLabel(p uint8) string {
	if s, ok := protoLabels[p]; ok {
		return s
	}
	return strconv.Itoa(int(p))
}

// tableWriter prints rows as a table for people: a header row, columns
// aligned. Widths come from the header and the first rows (up to
// tableSample), which are held back until then, so that a listing of
// millions of flows still streams; a later wider cell widens its column
// from then on.
type tableWriter struct {
	w      *bufio.Writer
	cols   []column
	row    func(f *Flow, row []string) []string
	held   [][]string
	width  []int
	flowed bool // the held rows were printed
	cells  []string
	b      []byte
}

type column struct {
	name  string
	right bool // numbers align right
}

const tableSample = 1000

func newTableWriter(w *bufio.Writer, cols []column, row func(*Flow, []string) []string) *tableWriter {
	t := &tableWriter{w: w, cols: cols, row: row, width: make([]int, len(cols))}
	for i, c := range cols {
		t.width[i] = len(c.name)
	}
	return t
}

func (t *tableWriter) Write(f *Flow) error {
	cells := t.row(f, t.cells[:0])
	return t.writeCells(cells)
}

func (t *tableWriter) writeCells(cells []string) error {
	if !t.flowed {
		t.held = append(t.held, append([]string(nil), cells...))
		if len(t.held) < tableSample {
			return nil
		}
		return t.release()
	}
	t.cells = cells
	return t.print(cells)
}

// release sizes the columns on the held rows and prints them, under the
// header; no rows print nothing at all.
func (t *tableWriter) release() error {
	t.flowed = true
	if len(t.held) == 0 {
		return nil
	}
	for _, r := range t.held {
		for i, c := range r {
			t.width[i] = max(t.width[i], utf8.RuneCountInString(c))
		}
	}
	hdr := make([]string, len(t.cols))
	for i, c := range t.cols {
		hdr[i] = c.name
	}
	if err := t.print(hdr); err != nil {
		return err
	}
	for _, r := range t.held {
		if err := t.print(r); err != nil {
			return err
		}
	}
	t.held = nil
	return nil
}

func (t *tableWriter) print(cells []string) error {
	b := t.b[:0]
	for i, c := range cells {
		n := utf8.RuneCountInString(c)
		t.width[i] = max(t.width[i], n)
		pad := t.width[i] - n
		last := i == len(cells)-1
		switch {
		case t.cols[i].right:
			b = append(b, strings.Repeat(" ", pad)...)
			b = append(b, c...)
		case last:
			b = append(b, c...)
		default:
			b = append(b, c...)
			b = append(b, strings.Repeat(" ", pad)...)
		}
		if !last {
			b = append(b, "  "...)
		}
	}
	for len(b) > 0 && b[len(b)-1] == ' ' { // an empty last column
		b = b[:len(b)-1]
	}
	b = append(b, '\n')
	t.b = b
	_, err := t.w.Write(b)
	return err
}

func (t *tableWriter) Flush() error {
	if !t.flowed {
		if err := t.release(); err != nil {
			return err
		}
	}
	return t.w.Flush()
}

func flowColumns(o *WriterOptions) []column {
	cols := []column{{"ID", true}, {"PROTO", false}, {"SRC", false}, {"SPORT", true}, {"DST", false}, {"DPORT", true},
		{"PACKETS", true}, {"BYTES", true}, {"FIRST", false}, {"LAST", false}, {"STATE", false}, {"PEER", true}}
	if o.Captures {
		cols = append(cols, column{"CAPTURE", false})
	}
	return append(cols, column{"CONTEXT", false})
}

// TableTimeLayout is how the text table prints times: the date, the
// time to the microsecond, and the zone.
const TableTimeLayout = "2006-01-02 15:04:05.000000 MST"

func tableTime(ns int64, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	return time.Unix(0, ns).In(loc).Format(TableTimeLayout)
}

func flowRow(f *Flow, o *WriterOptions, row []string) []string {
	k := &f.Key
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	state := ""
	if k.Proto == 6 {
		state = f.State.String()
	}
	peer := ""
	if f.Peer != 0 {
		peer = u(f.Peer)
	}
	row = append(row, u(f.ID), ProtoLabel(k.Proto), k.SrcAddr().String(), u(uint64(k.SrcPort)), k.DstAddr().String(), u(uint64(k.DstPort)),
		u(f.Packets), u(f.Bytes), tableTime(f.First, o.Location), tableTime(f.Last, o.Location), state, peer)
	if o.Captures {
		row = append(row, o.name(f.Capture))
	}
	return append(row, keyContext(k, f.Outer))
}

// keyContext says where a flow lives beyond its addresses: its VLAN
// stack and the tunnel that carries it, in the filter's words.
func keyContext(k *Key, outer uint64) string {
	var parts []string
	for _, v := range k.VLANs() {
		parts = append(parts, "vlan "+strconv.Itoa(int(v)))
	}
	if k.TunnelType != 0 {
		parts = append(parts, fmt.Sprintf("%s %d (outer flow %d)", k.TunnelType, k.TunnelID, outer))
	}
	return strings.Join(parts, ", ")
}

// seedWriter prints pcap_flow's line layout, as its README shows it:
//
//	FlowID:        1 | TCP  02:00:00:00:00:01 -> 02:00:00:00:00:02 |  10.  0.  0.  1 ->  10.  0.  0.  2 |  40000 ->     80  |               10 Pkts             3500 Bytes  |  10:00:00.000.000.000 -> 10:00:00.022.002.000 : 00:00:00.022.002.000
//
// IPv4 octets are padded as pcap_flow pads them; IPv6 addresses are
// printed in their compressed form. Times are UTC.
type seedWriter struct {
	w *bufio.Writer
	b []byte
}

func (t *seedWriter) Write(f *Flow) error {
	t.b = AppendSeed(t.b[:0], f)
	t.b = append(t.b, '\n')
	_, err := t.w.Write(t.b)
	return err
}

func (t *seedWriter) Flush() error { return t.w.Flush() }

// AppendSeed appends pcap_flow's line for f (without newline).
func AppendSeed(b []byte, f *Flow) []byte {
	k := &f.Key
	b = fmt.Appendf(b, "FlowID: %8d | %-4s %s -> %s | ", f.ID, upperProto(k.Proto), seedMAC(f.SrcMAC, f.HasSrcMAC), seedMAC(f.DstMAC, f.HasDstMAC))
	b = appendPaddedAddr(b, k.SrcAddr())
	b = append(b, " -> "...)
	b = appendPaddedAddr(b, k.DstAddr())
	b = fmt.Appendf(b, " | %6d -> %6d  | %16d Pkts %16d Bytes  |  ", k.SrcPort, k.DstPort, f.Packets, f.Bytes)
	b = AppendClock(b, f.First)
	b = append(b, " -> "...)
	b = AppendClock(b, f.Last)
	b = append(b, " : "...)
	return AppendDuration(b, f.Last-f.First)
}

func seedMAC(m [6]byte, ok bool) string {
	if !ok {
		return "00:00:00:00:00:00"
	}
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}
