package reasm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A zero-filled hole is the same bytes whether written out or made a
// sparse extension of the file; a gigabyte-wide one (a stray segment far
// ahead) takes no disk space and no gigabyte of writes.
func TestZeroFilledGapInFiles(t *testing.T) {
	const isn = 1000
	for _, tc := range []struct {
		name   string
		hole   uint32
		header bool
		sparse bool
	}{
		{name: "small hole written", hole: 100},
		{name: "hole at the sparse threshold", hole: sparseFrom, sparse: true},
		{name: "gigabyte hole", hole: 1 << 30, sparse: true},
		{name: "framed hole written", hole: 70000, header: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := &DirWriter{Dir: dir, MaxOpen: 1, Header: tc.header}
			fs := w.Stream("s", 7)
			other := w.Stream("o", 8) // shares the one open file, so s is reopened
			s := NewStream(Policy{Gaps: GapZero}, fs)
			s.Segment(1, isn, syn, nil, 0)
			s.Segment(2, isn+1, psh, []byte("AAAA"), 4)
			other.Data(3, bytes.Repeat([]byte("o"), fileBuffer)) // flushes, taking the open slot
			s.Segment(4, isn+5+tc.hole, psh, []byte("BBBB"), 4)
			s.Segment(5, isn+9+tc.hole, fin, nil, 0)
			s.Close()
			if err := fs.Finish(); err != nil {
				t.Fatal(err)
			}
			if err := other.Finish(); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if st.MissingBytes != uint64(tc.hole) || st.Delivered != uint64(tc.hole)+8 {
				t.Errorf("stats %+v, want %d missing and %d delivered", st, tc.hole, tc.hole+8)
			}
			p := filepath.Join(dir, "s")
			info, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(tc.hole) + 8
			if tc.header {
				want += HeaderLen * int64(2+(int(tc.hole)+4095)/4096) // zeros go in 4 KiB chunks
			}
			if info.Size() != want {
				t.Fatalf("file is %d bytes, want %d", info.Size(), want)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tc.header {
				b, _ := os.ReadFile(p)
				var got []byte
				for len(b) >= HeaderLen {
					n := int(b[8]) | int(b[9])<<8
					got = append(got, b[HeaderLen:HeaderLen+n]...)
					b = b[HeaderLen+n:]
				}
				wantData := append(append([]byte("AAAA"), make([]byte, tc.hole)...), "BBBB"...)
				if !bytes.Equal(got, wantData) {
					t.Fatalf("framed data differs from AAAA, %d zeros, BBBB", tc.hole)
				}
				return
			}
			for _, at := range []struct {
				off  int64
				want string
			}{{0, "AAAA\x00"}, {int64(tc.hole) + 3, "\x00BBBB"}, {int64(tc.hole) / 2, "\x00\x00\x00\x00"}} {
				b := make([]byte, len(at.want))
				if _, err := f.ReadAt(b, at.off); err != nil || string(b) != at.want {
					t.Errorf("at %d: %q (%v), want %q", at.off, b, err, at.want)
				}
			}
			if used, ok := diskUsage(info); ok && tc.sparse {
				if used > 1<<20 {
					t.Errorf("a %d-byte hole uses %d bytes of disk; want a sparse file", tc.hole, used)
				}
			}
		})
	}
}
