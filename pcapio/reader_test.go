package pcapio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/pcapio"
)

type rec struct {
	off, length int
	ts          int64
	link        pcapio.LinkType
	iface       int
	orig        int
	data, raw   []byte
}

// readAll reads every record of a capture in memory and returns them with
// the terminating error (nil for a clean end).
// readFile makes a committed capture and reads it whole; it must read.
func readFile(t testing.TB, f capgen.File) ([]byte, []rec, *pcapio.Reader) {
	t.Helper()
	b := f.Make()
	recs, r, err := readAll(t, f.Name, b)
	if err != nil {
		t.Fatal(err)
	}
	return b, recs, r
}

func readAll(t testing.TB, name string, b []byte) ([]rec, *pcapio.Reader, error) {
	t.Helper()
	r, err := pcapio.NewReader(bytes.NewReader(b), name)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	var out []rec
	var x pcapio.Record
	for {
		err := r.Next(&x)
		if err == io.EOF {
			return out, r, nil
		}
		if err != nil {
			return out, r, err
		}
		if len(x.Data) != x.CapLen {
			t.Fatalf("%s: record at %d: len(Data)=%d CapLen=%d", name, x.Offset, len(x.Data), x.CapLen)
		}
		out = append(out, rec{int(x.Offset), x.Length, x.Timestamp, x.LinkType, x.Interface, x.OrigLen,
			bytes.Clone(x.Data), bytes.Clone(x.Raw)})
	}
}

func TestGeneratedCapturesRoundTrip(t *testing.T) {
	want := capgen.Basic().Packets
	for _, f := range capgen.Files() {
		if !strings.HasPrefix(f.Name, "basic") {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			b := f.Make()
			got, r, err := readAll(t, f.Name, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d records, generated %d", len(got), len(want))
			}
			for i, g := range got {
				w := want[i]
				data := w.Data
				if g.link == pcapio.LinkRaw {
					data = capgen.StripEthernet(w.Data)
				}
				if !bytes.Equal(g.data, data) {
					t.Fatalf("record %d: data differs", i)
				}
				if g.orig != len(g.data) {
					t.Errorf("record %d: orig len %d, want %d", i, g.orig, len(g.data))
				}
				// Each format keeps the precision it can: µs, ns, or 2^-20 s.
				tol := int64(0)
				switch {
				case strings.HasSuffix(f.Name, "-be.pcapng"):
					tol = 954 // 1e9 / 2^20
				case f.Name == "basic.pcap" || (strings.HasSuffix(f.Name, ".pcapng") && g.link == pcapio.LinkEthernet):
					tol = 999
				}
				if d := w.TS - g.ts; d < 0 || d > tol {
					t.Errorf("record %d: timestamp %d, generated %d (tolerance %d)", i, g.ts, w.TS, tol)
				}
				if !bytes.Equal(b[g.off:g.off+g.length], g.raw) {
					t.Errorf("record %d: Raw is not the file's bytes at its offset", i)
				}
			}
			if f.Name == "basic.pcapng" {
				l := r.Layout()
				if len(l.Sections) != 2 || len(l.Interfaces) != 4 {
					t.Errorf("layout has %d sections and %d interfaces, want 2 and 4", len(l.Sections), len(l.Interfaces))
				}
				if st := r.Stats(); st.SkippedBlocks != 8 {
					t.Errorf("skipped %d unknown blocks, want 8", st.SkippedBlocks)
				}
			}
		})
	}
}

func TestRecordReaderMatchesStream(t *testing.T) {
	for _, f := range capgen.Files() {
		b, got, r := readFile(t, f)
		rr := pcapio.NewRecordReader(bytes.NewReader(b), f.Name, r.Layout())
		var x pcapio.Record
		// Out of order on purpose: random access must not depend on history.
		for i := len(got) - 1; i >= 0; i-- {
			g := got[i]
			for _, length := range []int{g.length, 0} {
				if err := rr.ReadRecord(int64(g.off), length, &x); err != nil {
					t.Fatalf("%s record %d: %v", f.Name, i, err)
				}
				if !bytes.Equal(x.Data, g.data) || x.Timestamp != g.ts || x.LinkType != g.link || x.Interface != g.iface || !bytes.Equal(x.Raw, g.raw) {
					t.Fatalf("%s record %d: random access differs from the stream", f.Name, i)
				}
			}
		}
		if err := rr.ReadRecord(int64(got[0].off+1), 0, &x); err == nil {
			t.Errorf("%s: reading at a wrong offset succeeded", f.Name)
		}
	}
}

func TestCompressedInput(t *testing.T) {
	plain := capgen.Files()[0].Make()
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(plain)
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(plain)
	zw.Close()
	want, _, err := readAll(t, "plain", plain)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"gzip": gz.Bytes(), "zstd": zs.Bytes()} {
		got, r, err := readAll(t, name, b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Compression() != name {
			t.Errorf("Compression() = %q, want %q", r.Compression(), name)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i].off != want[i].off || !bytes.Equal(got[i].data, want[i].data) {
				t.Fatalf("%s: record %d differs", name, i)
			}
		}
	}
}

// Cutting a capture anywhere must give every whole record before the cut
// and a truncation warning, never a panic or a wrong record.
func TestTruncatedAnywhere(t *testing.T) {
	for _, f := range capgen.Files() {
		b, all, _ := readFile(t, f)
		for cut := 0; cut < len(b); cut += 7 {
			got, _, err := readAll(t, f.Name, b[:cut])
			whole := 0
			for _, r := range all {
				if r.off+r.length <= cut {
					whole++
				}
			}
			if len(got) != whole {
				t.Fatalf("%s cut at %d: %d records, want %d (err %v)", f.Name, cut, len(got), whole, err)
			}
			atBoundary := boundaries(b)[cut]
			if err == nil && !atBoundary {
				t.Fatalf("%s cut at %d: no error", f.Name, cut)
			}
			if err != nil {
				var pe *pcapio.Error
				if !errors.As(err, &pe) {
					t.Fatalf("%s cut at %d: error %v is not a *pcapio.Error", f.Name, cut, err)
				}
				if cut > 24 && !pcapio.IsWarning(err) && !errors.Is(err, pcapio.ErrUnknownFormat) {
					t.Fatalf("%s cut at %d: %v, want a truncation warning", f.Name, cut, err)
				}
			}
		}
	}
}

// boundaries returns the offsets at which a block or record starts or the
// file ends: the places where a capture may end cleanly.
func boundaries(b []byte) map[int]bool {
	m := map[int]bool{len(b): true}
	if len(b) < 12 {
		return m
	}
	if binary.LittleEndian.Uint32(b) != 0x0a0d0d0a {
		hl := 16
		m[24] = true
		for off := 24; off+hl <= len(b); {
			var n uint32
			if b[0] == 0xa1 {
				n = binary.BigEndian.Uint32(b[off+8:])
			} else {
				n = binary.LittleEndian.Uint32(b[off+8:])
			}
			off += hl + int(n)
			m[off] = true
		}
		return m
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if b[8] == 0x1a {
		order = binary.BigEndian
	}
	for off := 0; off+8 <= len(b); {
		m[off] = true
		off += int(order.Uint32(b[off+4:]))
		m[off] = true
	}
	return m
}

func TestModifiedPcapFormat(t *testing.T) {
	// The "modified" libpcap format has 24-byte record headers (ifindex,
	// protocol, packet type, padding) and its own magic.
	var b bytes.Buffer
	b.Write([]byte{0x34, 0xcd, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0})
	frame := capgen.ARP()
	hdr := make([]byte, 24)
	hdr[8], hdr[12] = byte(len(frame)), byte(len(frame))
	for i := 0; i < 3; i++ {
		hdr[0] = byte(i)
		b.Write(hdr)
		b.Write(frame)
	}
	got, _, err := readAll(t, "modified", b.Bytes())
	if err != nil || len(got) != 3 {
		t.Fatalf("got %d records, err %v", len(got), err)
	}
	if got[2].ts != 2e9 || !bytes.Equal(got[1].data, frame) || got[1].length != 24+len(frame) {
		t.Errorf("record fields wrong: %+v", got[1])
	}
}

// Every file of the shared corpus: the record count equals capinfos's, and
// malformed files fail the way docs/pcapio.md says.
func TestCorpusRecordCounts(t *testing.T) {
	dir := corpus.Dir(t)
	for _, e := range corpus.Manifest(t) {
		t.Run(e.File, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, e.File))
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := readAll(t, e.File, b)
			if len(got) != e.Packets {
				t.Errorf("read %d records, capinfos counted %d (err %v)", len(got), e.Packets, err)
			}
			want := corpusErrors[e.File]
			switch {
			case want == nil && err != nil:
				t.Errorf("unexpected error: %v", err)
			case want != nil && !errors.Is(err, want):
				t.Errorf("error %v, want %v", err, want)
			case err != nil && !strings.Contains(err.Error(), e.File+": offset "):
				t.Errorf("error %q does not name the file and offset", err)
			}
			if err == nil && e.Has("malformed") && e.File != "gopacket__le_test901.pcapng" {
				t.Errorf("malformed file read without error")
			}
		})
	}
}

// corpusErrors is how each malformed corpus file ends.
var corpusErrors = map[string]error{
	"derived__dns_udp_absurd-caplen-rec2.pcap":             pcapio.ErrRecordTooLarge,
	"derived__dns_udp_absurd-caplen.pcap":                  pcapio.ErrRecordTooLarge,
	"derived__dns_udp_bad-magic.pcap":                      pcapio.ErrUnknownFormat,
	"derived__http_get_cut-mid-header.pcap":                pcapio.ErrTruncated,
	"derived__http_get_cut-mid-record.pcap":                pcapio.ErrTruncated,
	"derived__pcapng-multi-interface_cut-mid-block.pcapng": pcapio.ErrTruncated,
	"gopacket__le_test901.pcapng":                          pcapio.ErrUnsupportedVersion,
}

func TestCorpusRandomAccess(t *testing.T) {
	dir := corpus.Dir(t)
	for _, e := range corpus.Manifest(t) {
		b, err := os.ReadFile(filepath.Join(dir, e.File))
		if err != nil {
			t.Fatal(err)
		}
		got, r, _ := readAll(t, e.File, b)
		if r == nil {
			continue
		}
		rr := pcapio.NewRecordReader(bytes.NewReader(b), e.File, r.Layout())
		var x pcapio.Record
		for i, g := range got {
			if err := rr.ReadRecord(int64(g.off), g.length, &x); err != nil {
				t.Fatalf("%s record %d: %v", e.File, i, err)
			}
			if !bytes.Equal(x.Raw, g.raw) || x.Timestamp != g.ts {
				t.Fatalf("%s record %d: differs", e.File, i)
			}
		}
	}
}

func TestEmptyAndGarbageInput(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":        nil,
		"short":        {0xd4, 0xc3},
		"text":         []byte("hello, this is not a capture at all"),
		"xz":           {0xfd, '7', 'z', 'X', 'Z', 0},
		"gzip-garbage": {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3},
	} {
		_, err := pcapio.NewReader(bytes.NewReader(b), name)
		var pe *pcapio.Error
		if !errors.As(err, &pe) || pe.File != name {
			t.Errorf("%s: got %v, want a *pcapio.Error naming the input", name, err)
		}
	}
}
