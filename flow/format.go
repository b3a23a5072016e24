package flow

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Writer prints flows in one of the output formats.
type Writer interface {
	Write(f *Flow) error
	// Flush writes buffered output; call it once at the end.
	Flush() error
}

// Format names an output format.
type Format string

const (
	FormatText Format = "text" // a table for people (the default)
	FormatSeed Format = "seed" // pcap_flow's line, as compat prints it
	FormatJSON Format = "json" // JSON lines, SPEC.md's fields
	FormatCSV  Format = "csv"  // the JSON fields as columns
)

// WriterOptions configure a Writer and a ConvWriter.
type WriterOptions struct {
	// CaptureName maps a flow's Capture index to the name printed in the
	// "capture" field (nil: none).
	CaptureName func(int) string
	// Location is the time zone of the text table's dates (nil: UTC).
	// JSON, CSV and seed times are always UTC.
	Location *time.Location
	// Captures adds the capture column to the text table (for listings
	// of several captures).
	Captures bool
}

func (o *WriterOptions) name(i int) string {
	if o.CaptureName == nil {
		return ""
	}
	return o.CaptureName(i)
}

// NewWriter returns a writer of the given format.
func NewWriter(w io.Writer, format Format, o *WriterOptions) (Writer, error) {
	if o == nil {
		o = &WriterOptions{}
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	switch format {
	case FormatText:
		return newTableWriter(bw, flowColumns(o), func(f *Flow, row []string) []string { return flowRow(f, o, row) }), nil
	case FormatSeed:
		return &seedWriter{w: bw}, nil
	case FormatJSON:
		return &jsonWriter{w: bw, o: o}, nil
	case FormatCSV:
		return &csvWriter{w: bw, o: o}, nil
	}
	return nil, formatError(format)
}

// ErrFormat means a listing format is none of the Format constants.
var ErrFormat = errors.New("unknown format")

func formatError(f Format) error {
	return fmt.Errorf("%w %q (want text, seed, json or csv)", ErrFormat, f)
}

// JSONFields are the names of the JSON object members and CSV columns,
// in order.
var JSONFields = []string{"id", "peer", "proto", "src", "dst", "sport", "dport", "src_mac", "dst_mac",
	"vlan", "tunnel", "packets", "bytes", "payload_bytes", "first", "last", "duration", "capture", "flags", "state", "history",
	"missing_bytes", "retrans_bytes", "overlap_bytes", "community_id"}

const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendSeconds formats a duration in ns as seconds with nine decimals
// (Zeek's duration, exactly).
func AppendSeconds(b []byte, ns int64) []byte {
	if ns < 0 {
		ns = 0
	}
	b = strconv.AppendInt(b, ns/1e9, 10)
	b = append(b, '.')
	frac := strconv.AppendInt(nil, ns%1e9+1e9, 10)
	return append(b, frac[1:]...)
}

// AppendTime formats ns since the epoch as RFC 3339 in UTC with all nine
// fractional digits.
func AppendTime(b []byte, ns int64) []byte {
	return time.Unix(0, ns).UTC().AppendFormat(b, timeLayout)
}

func macString(m [6]byte, ok bool) string {
	if !ok {
		return ""
	}
	return net.HardwareAddr(m[:]).String()
}

type jsonWriter struct {
	o *WriterOptions
	w *bufio.Writer
	b []byte
}

func appendJSONString(b []byte, s string) []byte { return strconv.AppendQuote(b, s) }

// appendUint appends a JSON member's key (with its comma) and number.
func appendUint(b []byte, key string, v uint64) []byte {
	b = append(b, key...)
	return strconv.AppendUint(b, v, 10)
}

// appendVLANs appends k's VLAN IDs, outermost first, sep between them.
func appendVLANs(b []byte, k *Key, sep byte) []byte {
	for i, v := range k.VLANs() {
		if i > 0 {
			b = append(b, sep)
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return b
}

// appendKeyContextJSON appends the "vlan" and "tunnel" members of a flow
// or conversation of key k: one layout for both.
func appendKeyContextJSON(b []byte, k *Key, outer uint64, depth uint8) []byte {
	b = append(b, `,"vlan":[`...)
	b = appendVLANs(b, k, ',')
	b = append(b, ']')
	if k.TunnelType != 0 {
		b = append(b, `,"tunnel":{"type":"`...)
		b = append(b, k.TunnelType.String()...)
		b = appendUint(b, `","id":`, uint64(k.TunnelID))
		b = appendUint(b, `,"outer":`, outer)
		b = appendUint(b, `,"depth":`, uint64(depth))
		b = append(b, '}')
	}
	return b
}

func (j *jsonWriter) Write(f *Flow) error {
	k := &f.Key
	b := j.b[:0]
	b = appendUint(b, `{"id":`, f.ID)
	b = appendUint(b, `,"peer":`, f.Peer)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, ProtoName(k.Proto))
	b = append(b, `,"src":"`...)
	b = k.SrcAddr().AppendTo(b)
	b = append(b, `","dst":"`...)
	b = k.DstAddr().AppendTo(b)
	b = appendUint(b, `","sport":`, uint64(k.SrcPort))
	b = appendUint(b, `,"dport":`, uint64(k.DstPort))
	b = append(b, `,"src_mac":`...)
	b = appendJSONString(b, macString(f.SrcMAC, f.HasSrcMAC))
	b = append(b, `,"dst_mac":`...)
	b = appendJSONString(b, macString(f.DstMAC, f.HasDstMAC))
	b = appendKeyContextJSON(b, k, f.Outer, f.Depth)
	b = appendUint(b, `,"packets":`, f.Packets)
	b = appendUint(b, `,"bytes":`, f.Bytes)
	b = appendUint(b, `,"payload_bytes":`, f.PayloadBytes)
	b = append(b, `,"first":"`...)
	b = AppendTime(b, f.First)
	b = append(b, `","last":"`...)
	b = AppendTime(b, f.Last)
	b = append(b, `","duration":`...)
	b = AppendSeconds(b, f.Last-f.First)
	b = append(b, `,"capture":`...)
	b = appendJSONString(b, j.o.name(f.Capture))
	if k.Proto == 6 {
		b = append(b, `,"flags":"`...)
		b = append(b, FlagLetters(f.TCPFlags)...)
		b = append(b, `","state":"`...)
		b = append(b, f.State.String()...)
		b = append(b, `","history":"`...)
		b = f.History.Append(b)
		b = append(b, '"')
		b = appendUint(b, `,"missing_bytes":`, f.MissingBytes)
		b = appendUint(b, `,"retrans_bytes":`, f.RetransBytes)
		b = appendUint(b, `,"overlap_bytes":`, f.OverlapBytes)
	}
	b = append(b, `,"community_id":"`...)
	b = append(b, f.CommunityID()...)
	b = append(b, "\"}\n"...)
	j.b = b
	_, err := j.w.Write(b)
	return err
}

func (j *jsonWriter) Flush() error { return j.w.Flush() }

// csvWriter writes RFC 4180 CSV (what encoding/csv writes: fields are
// quoted only when they must be, lines end in \n) by appending into one
// buffer: building a []string per flow for encoding/csv cost more than
// the scan itself on a listing of 1.7 million flows.
type csvWriter struct {
	w      *bufio.Writer
	o      *WriterOptions
	header bool
	b      []byte
}

func (c *csvWriter) writeHeader() error {
	c.header = true
	b := c.b[:0]
	for i, f := range JSONFields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f...)
	}
	c.b = append(b, '\n')
	_, err := c.w.Write(c.b)
	return err
}

// appendCSVField appends s, quoted if encoding/csv would quote it.
func appendCSVField(b []byte, s string) []byte {
	quote := s == `\.` || s != "" && (s[0] == ' ' || s[0] == '\t')
	for i := 0; i < len(s) && !quote; i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			quote = true
		}
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func (c *csvWriter) Write(f *Flow) error {
	if !c.header {
		if err := c.writeHeader(); err != nil {
			return err
		}
	}
	k := &f.Key
	b := c.b[:0]
	b = strconv.AppendUint(b, f.ID, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, f.Peer, 10)
	b = append(b, ',')
	b = append(b, ProtoName(k.Proto)...)
	b = append(b, ',')
	b = k.SrcAddr().AppendTo(b)
	b = append(b, ',')
	b = k.DstAddr().AppendTo(b)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(k.SrcPort), 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(k.DstPort), 10)
	b = append(b, ',')
	b = appendMAC(b, f.SrcMAC, f.HasSrcMAC)
	b = append(b, ',')
	b = appendMAC(b, f.DstMAC, f.HasDstMAC)
	b = append(b, ',')
	b = appendVLANs(b, k, ';')
	b = append(b, ',')
	if k.TunnelType != 0 {
		b = append(b, k.TunnelType.String()...)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(k.TunnelID), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, f.Outer, 10)
	}
	b = append(b, ',')
	b = strconv.AppendUint(b, f.Packets, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, f.Bytes, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, f.PayloadBytes, 10)
	b = append(b, ',')
	b = AppendTime(b, f.First)
	b = append(b, ',')
	b = AppendTime(b, f.Last)
	b = append(b, ',')
	b = AppendSeconds(b, f.Last-f.First)
	b = append(b, ',')
	b = appendCSVField(b, c.o.name(f.Capture))
	b = append(b, ',')
	if k.Proto == 6 {
		b = append(b, FlagLetters(f.TCPFlags)...)
	}
	b = append(b, ',')
	b = append(b, f.State.String()...)
	b = append(b, ',')
	b = f.History.Append(b)
	b = append(b, ',')
	if k.Proto == 6 {
		b = strconv.AppendUint(b, f.MissingBytes, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, f.RetransBytes, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, f.OverlapBytes, 10)
	} else {
		b = append(b, ",,"...)
	}
	b = append(b, ',')
	b = AppendCommunityID(b, k, 0)
	b = append(b, '\n')
	c.b = b
	_, err := c.w.Write(b)
	return err
}

func (c *csvWriter) Flush() error {
	if !c.header {
		if err := c.writeHeader(); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// appendMAC appends m as net.HardwareAddr prints it, or nothing.
func appendMAC(b []byte, m [6]byte, ok bool) []byte {
	if !ok {
		return b
	}
	const hex = "0123456789abcdef"
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return b
}

func upperProto(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 1:
		return "ICMP"
	case 58:
		return "ICMP6"
	case 132:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}

func textMAC(m [6]byte, ok bool) string {
	if !ok {
		return "--:--:--:--:--:--"
	}
	return net.HardwareAddr(m[:]).String()
}

// appendPaddedAddr writes IPv4 with each octet right-aligned in 3 columns,
// as the seed does; IPv6 as usual.
func appendPaddedAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		o := a.As4()
		return fmt.Appendf(b, "%3d.%3d.%3d.%3d", o[0], o[1], o[2], o[3])
	}
	return a.AppendTo(b)
}

// AppendClock writes the time of day (UTC) as HH:MM:SS.mmm.uuu.nnn.
func AppendClock(b []byte, ns int64) []byte {
	t := time.Unix(0, ns).UTC()
	sub := t.Nanosecond()
	return fmt.Appendf(b, "%02d:%02d:%02d.%03d.%03d.%03d", t.Hour(), t.Minute(), t.Second(), sub/1e6, sub/1e3%1e3, sub%1e3)
}

// AppendDuration writes a duration as HH:MM:SS.mmm.uuu.nnn.
func AppendDuration(b []byte, ns int64) []byte {
	if ns < 0 {
		ns = 0
	}
	s := ns / 1e9
	sub := ns % 1e9
	return fmt.Appendf(b, "%02d:%02d:%02d.%03d.%03d.%03d", s/3600, s/60%60, s%60, sub/1e6, sub/1e3%1e3, sub%1e3)
}
