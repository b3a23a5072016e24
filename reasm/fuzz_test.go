package reasm

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/pcapio"
)

// seedStreams adds, as FuzzStream inputs, the TCP directions of the
// generated captures and of the small corpus files: real segment
// sequences (handshakes, retransmissions, reordering, wrap) for the
// fuzzer to mutate. Each segment is encoded as FuzzStream reads it: flags,
// big-endian sequence number, length, at most 255 payload bytes.
func seedStreams(f *testing.F) {
	var captures [][]byte
	for _, g := range capgen.Files() {
		captures = append(captures, g.Make())
	}
	if dir := corpus.Find(); dir != "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if n := e.Name(); strings.HasSuffix(n, ".pcap") || strings.HasSuffix(n, ".pcapng") {
				if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil && len(b) < 256<<10 {
					captures = append(captures, b)
				}
			}
		}
	}
	seeds := 0
	for _, b := range captures {
		r, err := pcapio.NewReader(bytes.NewReader(b), "seed")
		if err != nil {
			continue
		}
		dirs := map[string][]byte{}
		var order []string
		var rec pcapio.Record
		var p pcapio.Packet
		for r.Next(&rec) == nil {
			p.DecodeWith(rec.LinkType, rec.Data, nil)
			if !p.HasTCPHeader || p.Fragment {
				continue
			}
			ports := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, p.SrcPort), p.DstPort)
			key := string(p.Src[:]) + string(p.Dst[:]) + string(ports)
			enc, seen := dirs[key]
			if !seen {
				order = append(order, key)
			}
			if len(enc) > 4<<10 {
				continue
			}
			payload := p.PayloadData(rec.Data)
			payload = payload[:min(len(payload), 255)]
			enc = append(enc, p.TCPFlags)
			enc = binary.BigEndian.AppendUint32(enc, p.Seq)
			enc = append(enc, byte(len(payload)))
			dirs[key] = append(enc, payload...)
		}
		if err := r.Close(); err != nil && err != io.EOF {
			continue
		}
		for _, k := range order[:min(len(order), 4)] {
			f.Add(dirs[k])
			seeds++
		}
	}
	if seeds == 0 {
		f.Fatal("no TCP direction in the generated captures to seed FuzzStream with")
	}
}

// FuzzStream feeds arbitrary segment sequences: no panic; the buffer
// stays within its cap; what is delivered never exceeds the bytes fed;
// the first-copy policy never writes a byte that was not received.
func FuzzStream(f *testing.F) {
	f.Add([]byte{0x02, 0, 0, 0, 0, 0, 0x18, 1, 0, 0, 0, 4, 'A', 'A', 'A', 'A'})
	f.Add(bytes.Repeat([]byte{0x18, 0xff, 0xff, 0xff, 0xf0, 8, 'x', 'y', 'z', 'w', 'x', 'y', 'z', 'w'}, 20))
	seedStreams(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		zeroFillEquivalence(t, b)
		var out bytes.Buffer
		var fed uint64
		received := map[byte]bool{0: true}
		s := NewStream(Policy{MaxBuffer: 4096, Budget: &Budget{Max: 8192}}, SinkFunc(func(ts int64, d []byte) error {
			out.Write(d)
			return nil
		}))
		feedEach(s, b, func(data []byte) {
			for _, c := range data {
				received[c] = true
			}
			fed += uint64(len(data))
			if s.buffered > 4096 {
				t.Fatalf("buffered %d bytes over the 4096 cap", s.buffered)
			}
		})
		st := s.Stats()
		if st.Delivered > fed {
			t.Fatalf("delivered %d bytes of %d fed", st.Delivered, fed)
		}
		for _, c := range out.Bytes() {
			if !received[c] {
				t.Fatalf("delivered byte %q that was never received", c)
			}
		}
	})
}

// feed runs the FuzzStream encoding of segments into s and closes it.
func feed(s *Stream, b []byte) { feedEach(s, b, func([]byte) {}) }

// feedEach is feed calling after each segment with its payload.
func feedEach(s *Stream, b []byte, after func(data []byte)) {
	for len(b) >= 6 {
		flags, seq, n := b[0], binary.BigEndian.Uint32(b[1:]), int(b[5])
		b = b[6:]
		n = min(n, len(b))
		s.Segment(0, seq, flags, b[:n], n)
		after(b[:n])
		b = b[n:]
	}
	s.Close()
}

// zeroFillEquivalence: with GapZero, a sink that takes zeros by count
// (a sparse file) ends up with the same bytes and counters as one handed
// the zeros. Inputs whose holes exceed a megabyte are only run through
// the counting sink, to keep each run fast.
func zeroFillEquivalence(t *testing.T, b []byte) {
	pol := Policy{Gaps: GapZero, MaxBuffer: 4096}
	probe := NewStream(pol, zeroCounter{})
	feed(probe, b)
	if probe.Stats().MissingBytes > 1<<20 {
		return
	}
	z := &zeroRec{}
	zs := NewStream(pol, z)
	feed(zs, b)
	r := &rec{}
	rs := NewStream(pol, r)
	feed(rs, b)
	if zs.Stats() != rs.Stats() || !bytes.Equal(z.b.Bytes(), r.b.Bytes()) {
		t.Fatalf("zeros by count: %d bytes %+v; zeros written: %d bytes %+v", z.b.Len(), zs.Stats(), r.b.Len(), rs.Stats())
	}
}

// zeroCounter takes data and zeros without keeping them.
type zeroCounter struct{}

func (zeroCounter) Data(int64, []byte) error  { return nil }
func (zeroCounter) Zeros(int64, uint64) error { return nil }
