package pcapio

import (
	"encoding/binary"
	"fmt"
	"io"
)

// PcapWriter writes a classic pcap file.
type PcapWriter struct {
	w       io.Writer
	big     bool
	nanos   bool
	hdrLen  int
	link    LinkType
	scratch [24]byte
}

// NewPcapWriter writes a new little-endian pcap header for the given link
// type and precision.
func NewPcapWriter(w io.Writer, link LinkType, snaplen uint32, nanos bool) (*PcapWriter, error) {
	var h [24]byte
	magic := uint32(magicMicro)
	if nanos {
		magic = magicNano
	}
	binary.LittleEndian.PutUint32(h[0:], magic)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], snaplen)
	binary.LittleEndian.PutUint32(h[20:], uint32(link))
	if _, err := w.Write(h[:]); err != nil {
		return nil, err
	}
	return &PcapWriter{w: w, nanos: nanos, hdrLen: 16, link: link}, nil
}

// NewPcapWriterLike copies the file header of a pcap section verbatim, so
// that records of that capture can be copied with WriteRaw.
func NewPcapWriterLike(w io.Writer, sec *Section, link LinkType) (*PcapWriter, error) {
	if len(sec.Raw) != 24 || sec.RecordHdr == 0 {
		return nil, fmt.Errorf("pcapio: section is not a pcap file header")
	}
	if _, err := w.Write(sec.Raw); err != nil {
		return nil, err
	}
	return &PcapWriter{w: w, big: sec.BigEndian, nanos: sec.Nanos, hdrLen: sec.RecordHdr, link: link}, nil
}

// Matches reports whether records of section sec can be copied verbatim.
func (pw *PcapWriter) Matches(sec *Section) bool {
	return sec.RecordHdr == pw.hdrLen && sec.BigEndian == pw.big && sec.Nanos == pw.nanos
}

// WriteRaw copies a record (header and data) exactly as given.
func (pw *PcapWriter) WriteRaw(raw []byte) error {
	_, err := pw.w.Write(raw)
	return err
}

// WritePacket encodes a record header for the writer's byte order and
// precision, then writes data unchanged.
func (pw *PcapWriter) WritePacket(ts int64, data []byte, origLen int) error {
	h := pw.scratch[:pw.hdrLen]
	clear(h)
	sec, frac := uint32(ts/1e9), uint32(ts%1e9)
	if ts < 0 {
		sec, frac = uint32((ts-1e9+1)/1e9), uint32(ts-(ts-1e9+1)/1e9*1e9)
	}
	if !pw.nanos {
		frac /= 1000
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if pw.big {
		order = binary.BigEndian
	}
	order.PutUint32(h[0:], sec)
	order.PutUint32(h[4:], frac)
	order.PutUint32(h[8:], uint32(len(data)))
	order.PutUint32(h[12:], uint32(origLen))
	if _, err := pw.w.Write(h); err != nil {
		return err
	}
	_, err := pw.w.Write(data)
	return err
}

// NgWriter writes a pcapng file.
type NgWriter struct {
	w   io.Writer
	buf []byte
}

// NewNgWriter returns a writer; nothing is written until a section header.
func NewNgWriter(w io.Writer) *NgWriter { return &NgWriter{w: w} }

// WriteBlock copies a block (SHB, IDB, EPB, ...) exactly as given.
func (nw *NgWriter) WriteBlock(raw []byte) error {
	_, err := nw.w.Write(raw)
	return err
}

// WriteSectionHeader starts a new little-endian section with no options.
func (nw *NgWriter) WriteSectionHeader() error {
	b := nw.block(blockSHB, 16)
	binary.LittleEndian.PutUint32(b[8:], byteOrderMagic)
	binary.LittleEndian.PutUint16(b[12:], 1)
	binary.LittleEndian.PutUint16(b[14:], 0)
	binary.LittleEndian.PutUint64(b[16:], ^uint64(0)) // section length unknown
	return nw.WriteBlock(b)
}

// WriteInterface writes an interface description with an if_tsresol
// option (6 for microseconds, 9 for nanoseconds).
func (nw *NgWriter) WriteInterface(link LinkType, snaplen uint32, tsresol uint8) error {
	b := nw.block(blockIDB, 8+8+4)
	binary.LittleEndian.PutUint16(b[8:], uint16(link))
	binary.LittleEndian.PutUint32(b[12:], snaplen)
	binary.LittleEndian.PutUint16(b[16:], 9) // if_tsresol
	binary.LittleEndian.PutUint16(b[18:], 1)
	b[20] = tsresol
	// b[24:28] is opt_endofopt, already zero.
	return nw.WriteBlock(b)
}

// WritePacket writes an enhanced packet block; ts is in nanoseconds and is
// written in the units of tsresol (6 or 9) of interface ifid.
func (nw *NgWriter) WritePacket(ifid uint32, tsresol uint8, ts int64, data []byte, origLen int) error {
	pad := (4 - len(data)%4) % 4
	b := nw.block(blockEPB, 20+len(data)+pad)
	units := uint64(ts)
	if tsresol == 6 {
		units = uint64(ts / 1000)
	}
	binary.LittleEndian.PutUint32(b[8:], ifid)
	binary.LittleEndian.PutUint32(b[12:], uint32(units>>32))
	binary.LittleEndian.PutUint32(b[16:], uint32(units))
	binary.LittleEndian.PutUint32(b[20:], uint32(len(data)))
	binary.LittleEndian.PutUint32(b[24:], uint32(origLen))
	copy(b[28:], data)
	return nw.WriteBlock(b)
}

// block returns a scratch block of the given type whose body (after the
// 8-byte header) is bodyLen bytes, with both length fields set.
func (nw *NgWriter) block(btype uint32, bodyLen int) []byte {
	n := 12 + bodyLen
	if cap(nw.buf) < n {
		nw.buf = make([]byte, n)
	}
	b := nw.buf[:n]
	clear(b)
	binary.LittleEndian.PutUint32(b[0:], btype)
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	binary.LittleEndian.PutUint32(b[n-4:], uint32(n))
	return b
}
