package reasm

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzStream feeds arbitrary segment sequences: no panic; the buffer
// stays within its cap; what is delivered never exceeds the bytes fed;
// the first-copy policy never writes a byte that was not received.
func FuzzStream(f *testing.F) {
	f.Add([]byte{0x02, 0, 0, 0, 0, 0, 0x18, 1, 0, 0, 0, 4, 'A', 'A', 'A', 'A'})
	f.Add(bytes.Repeat([]byte{0x18, 0xff, 0xff, 0xff, 0xf0, 8, 'x', 'y', 'z', 'w', 'x', 'y', 'z', 'w'}, 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		var fed uint64
		received := map[byte]bool{0: true}
		s := NewStream(Policy{MaxBuffer: 4096, Budget: &Budget{Max: 8192}}, SinkFunc(func(ts int64, d []byte) error {
			out.Write(d)
			return nil
		}))
		for len(b) >= 6 {
			flags, seq, n := b[0], binary.BigEndian.Uint32(b[1:]), int(b[5])
			b = b[6:]
			n = min(n, len(b))
			data := b[:n]
			b = b[n:]
			for _, c := range data {
				received[c] = true
			}
			fed += uint64(n)
			s.Segment(0, seq, flags, data, n)
			if s.buffered > 4096 {
				t.Fatalf("buffered %d bytes over the 4096 cap", s.buffered)
			}
		}
		s.Close()
		st := s.Stats()
		if st.Delivered-uint64(0) > fed && s.pol.Gaps != GapZero {
			t.Fatalf("delivered %d bytes of %d fed", st.Delivered, fed)
		}
		for _, c := range out.Bytes() {
			if !received[c] {
				t.Fatalf("delivered byte %q that was never received", c)
			}
		}
	})
}
