package pcapio_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/pcapio"
)

// seedCaptures adds the generated captures and the small corpus files
// whose names end in one of the suffixes.
func seedCaptures(f *testing.F, suffixes ...string) {
	for _, g := range capgen.Files() {
		for _, s := range suffixes {
			if strings.HasSuffix(g.Name, s) {
				f.Add(g.Make())
			}
		}
	}
	dir := corpus.Find()
	if dir == "" {
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		for _, s := range suffixes {
			if strings.HasSuffix(e.Name(), s) {
				if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && len(b) < 64<<10 {
					f.Add(b)
				}
			}
		}
	}
}

// fuzzReader checks the reader's invariants on arbitrary input: no panic,
// every record's Raw is the input's bytes at its offset, records do not
// overlap, and random access returns the same record.
func fuzzReader(t *testing.T, b []byte) {
	r, err := pcapio.NewReader(bytes.NewReader(b), "fuzz")
	if err != nil {
		return
	}
	defer r.Close()
	type seen struct {
		off  int64
		n    int
		ts   int64
		data []byte
	}
	var recs []seen
	var x pcapio.Record
	end := int64(0)
	for len(recs) < 10000 {
		err := r.Next(&x)
		if err == io.EOF {
			break
		}
		if err != nil {
			if _, ok := err.(*pcapio.Error); !ok {
				t.Fatalf("error %T %v is not a *pcapio.Error", err, err)
			}
			break
		}
		if r.Compression() == "" {
			if x.Offset < end || x.Offset+int64(x.Length) > int64(len(b)) || !bytes.Equal(b[x.Offset:x.Offset+int64(x.Length)], x.Raw) {
				t.Fatalf("record at %d (len %d) is not the input's bytes", x.Offset, x.Length)
			}
		}
		if len(x.Data) != x.CapLen {
			t.Fatalf("len(Data) %d != CapLen %d", len(x.Data), x.CapLen)
		}
		end = x.Offset + int64(x.Length)
		recs = append(recs, seen{x.Offset, x.Length, x.Timestamp, bytes.Clone(x.Data)})
	}
	if r.Compression() != "" {
		return
	}
	rr := pcapio.NewRecordReader(bytes.NewReader(b), "fuzz", r.Layout())
	for _, s := range recs {
		if err := rr.ReadRecord(s.off, s.n, &x); err != nil {
			t.Fatalf("random access at %d: %v", s.off, err)
		}
		if x.Timestamp != s.ts || !bytes.Equal(x.Data, s.data) {
			t.Fatalf("random access at %d differs", s.off)
		}
	}
}

func FuzzPcapReader(f *testing.F) {
	seedCaptures(f, ".pcap", ".cap")
	f.Fuzz(fuzzReader)
}

func FuzzPcapngReader(f *testing.F) {
	seedCaptures(f, ".pcapng")
	f.Fuzz(fuzzReader)
}

func FuzzDecode(f *testing.F) {
	for _, p := range capgen.Basic().Packets {
		f.Add(uint16(pcapio.LinkEthernet), p.Data)
	}
	for _, lt := range []pcapio.LinkType{pcapio.LinkNull, pcapio.LinkRaw, pcapio.LinkLinuxSLL, pcapio.LinkLinuxSLL2, pcapio.LinkPPP} {
		f.Add(uint16(lt), capgen.StripEthernet(capgen.Basic().Packets[3].Data))
	}
	for _, p := range capgen.Tunnels().Packets { // every tunnel decoder
		f.Add(uint16(pcapio.LinkEthernet), p.Data)
	}
	f.Fuzz(func(t *testing.T, link uint16, data []byte) {
		var p pcapio.Packet
		p.Decode(pcapio.LinkType(link), data)
		if p.CapturedLen > 0 {
			if p.PayloadOffset < 0 || p.PayloadOffset+p.CapturedLen > len(data) {
				t.Fatalf("payload [%d,+%d) outside %d bytes", p.PayloadOffset, p.CapturedLen, len(data))
			}
		}
		if p.CapturedLen > p.PayloadLen {
			t.Fatalf("captured %d > payload %d", p.CapturedLen, p.PayloadLen)
		}
		if p.IPVersion != 0 && p.L3Offset > len(data) {
			t.Fatalf("L3 offset %d beyond %d", p.L3Offset, len(data))
		}
		// Open tunnels as ingest does: offsets must stay in the data.
		cur, d := p, data
		for depth := 0; cur.Tunnel != 0 && depth < 4; depth++ {
			if cur.InnerOffset < 0 || cur.InnerOffset > len(d) {
				t.Fatalf("inner offset %d outside %d bytes", cur.InnerOffset, len(d))
			}
			var inner pcapio.Packet
			inner.DecodeInner(&cur, d, nil)
			d = d[cur.InnerOffset:]
			cur = inner
		}
	})
}
