package pcapio

import (
	"fmt"
	"io"
	"sort"
)

// OutputFormat picks the format for records copied from these captures:
// pcapng when any of them is pcapng or when their link types differ (a pcap
// file has one link type), pcap otherwise.
func OutputFormat(sources []*Layout) Format {
	var link LinkType
	seen := false
	for _, l := range sources {
		if l.Format == FormatPcapNG {
			return FormatPcapNG
		}
		for _, ifc := range l.Interfaces {
			if seen && ifc.LinkType != link {
				return FormatPcapNG
			}
			link, seen = ifc.LinkType, true
		}
	}
	return FormatPcap
}

// Copier writes records taken from one or more captures into one output
// file, keeping each record's bytes. Records of a pcapng capture are copied
// block for block, preceded by their section header and interface blocks;
// records of a pcap capture written to a pcap file of the same byte order
// and precision are copied with their record header. Only where the formats
// differ is a record header re-encoded; packet bytes are never changed.
type Copier struct {
	format  Format
	sources []*Layout
	w       interface{ Write([]byte) (int, error) }
	pcap    *PcapWriter
	ng      *NgWriter
	curSrc  int
	curSec  int
}

// NewCopier writes to w in the given format; sources are the layouts of
// the captures that records will come from, indexed by Write's src.
func NewCopier(w io.Writer, format Format, sources []*Layout) *Copier {
	c := &Copier{format: format, sources: sources, w: w, curSrc: -1, curSec: -1}
	if format == FormatPcapNG {
		c.ng = NewNgWriter(w)
	}
	return c
}

// Format is the output format.
func (c *Copier) Format() Format { return c.format }

// Finish writes a valid empty file if no record was written (so an empty
// result still opens in Wireshark).
func (c *Copier) Finish() error {
	if c.curSrc >= 0 || c.pcap != nil {
		return nil
	}
	if c.format == FormatPcap {
		link, snap, nanos := LinkEthernet, uint32(262144), false
		if len(c.sources) > 0 && len(c.sources[0].Interfaces) > 0 {
			if s := c.sources[0]; s.Format == FormatPcap {
				var err error
				c.pcap, err = NewPcapWriterLike(c.w, &s.Sections[0], s.Interfaces[0].LinkType)
				return err
			}
			link, snap = c.sources[0].Interfaces[0].LinkType, c.sources[0].Interfaces[0].SnapLen
		}
		_, err := NewPcapWriter(c.w, link, snap, nanos)
		return err
	}
	if len(c.sources) > 0 && c.sources[0].Format == FormatPcapNG && len(c.sources[0].Sections) > 0 {
		return c.startNgSection(c.sources[0], 0)
	}
	return c.ng.WriteSectionHeader()
}

// Write copies rec, read from capture src.
func (c *Copier) Write(src int, rec *Record) error {
	l := c.sources[src]
	if c.format == FormatPcap {
		return c.writePcap(l, rec)
	}
	sec := 0
	if l.Format == FormatPcapNG {
		sec = sort.Search(len(l.Sections), func(i int) bool { return l.Sections[i].Offset > rec.Offset }) - 1
	}
	if src != c.curSrc || sec != c.curSec {
		c.curSrc, c.curSec = src, sec
		if l.Format == FormatPcapNG {
			if err := c.startNgSection(l, sec); err != nil {
				return err
			}
		} else {
			if err := c.ng.WriteSectionHeader(); err != nil {
				return err
			}
			ifc := l.Interfaces[0]
			if err := c.ng.WriteInterface(ifc.LinkType, ifc.SnapLen, tsresolOf(l)); err != nil {
				return err
			}
		}
	}
	if l.Format == FormatPcapNG {
		return c.ng.WriteBlock(rec.Raw)
	}
	return c.ng.WritePacket(0, tsresolOf(l), rec.Timestamp, rec.Data, rec.OrigLen)
}

func (c *Copier) startNgSection(l *Layout, sec int) error {
	if err := c.ng.WriteBlock(l.Sections[sec].Raw); err != nil {
		return err
	}
	for _, ifc := range l.Interfaces {
		if ifc.Section == sec {
			if err := c.ng.WriteBlock(ifc.Raw); err != nil {
				return err
			}
		}
	}
	return nil
}

func tsresolOf(l *Layout) uint8 {
	if l.Format == FormatPcap && !l.Sections[0].Nanos {
		return 6
	}
	return 9
}

func (c *Copier) writePcap(l *Layout, rec *Record) error {
	if c.pcap == nil {
		var err error
		if l.Format == FormatPcap {
			c.pcap, err = NewPcapWriterLike(c.w, &l.Sections[0], rec.LinkType)
		} else {
			ifc := l.Interfaces[rec.Interface]
			nanos := ifc.TsResol&0x80 != 0 || ifc.TsResol > 6
			c.pcap, err = NewPcapWriter(c.w, rec.LinkType, max(ifc.SnapLen, 262144), nanos)
		}
		if err != nil {
			return err
		}
		c.curSrc = 0
	}
	if rec.LinkType != c.pcap.link {
		return fmt.Errorf("record at offset %d has link type %v but the pcap output has %v; write pcapng instead", rec.Offset, rec.LinkType, c.pcap.link)
	}
	if l.Format == FormatPcap && c.pcap.Matches(&l.Sections[0]) {
		return c.pcap.WriteRaw(rec.Raw)
	}
	return c.pcap.WritePacket(rec.Timestamp, rec.Data, rec.OrigLen)
}
