package inflate

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

// sample is compressible data with long and short matches, literals
// and stretches of noise, as packet captures have.
func sample(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	words := [][]byte{[]byte("GET /index.html HTTP/1.1\r\n"), []byte("Host: example.com\r\n"), {0, 0, 0, 0, 0x45, 0}, []byte("\x08\x00\x45\x00")}
	b := make([]byte, 0, n)
	for len(b) < n {
		switch rng.IntN(4) {
		case 0:
			for range rng.IntN(300) {
				b = append(b, byte(rng.Uint32()))
			}
		case 1:
			if len(b) > 100 {
				at := rng.IntN(len(b) - 50)
				b = append(b, b[at:at+rng.IntN(50)]...)
			}
		case 2:
			for range rng.IntN(700) {
				b = append(b, 'a')
			}
		default:
			b = append(b, words[rng.IntN(len(words))]...)
		}
	}
	return b[:n]
}

func deflate(t testing.TB, data []byte, level int) []byte {
	var z bytes.Buffer
	w, err := flate.NewWriter(&z, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return z.Bytes()
}

func gz(data []byte, level int, members int) []byte {
	var z bytes.Buffer
	step := len(data)/members + 1
	for i := 0; i < len(data) || i == 0; i += step {
		w, _ := gzip.NewWriterLevel(&z, level)
		w.Name = "x.pcap"
		w.Write(data[i:min(len(data), i+step)])
		w.Close()
	}
	return z.Bytes()
}

// A raw stream decodes as compress/flate decodes it, at every level
// (stored, Huffman only, fixed and dynamic codes), read in odd sizes.
func TestDecoderMatchesFlate(t *testing.T) {
	for _, n := range []int{0, 1, 100, 70000, 3 << 20} {
		data := sample(uint64(n), n)
		for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, flate.BestSpeed, 6, flate.BestCompression} {
			z := deflate(t, data, level)
			d := NewDecoder(iotestReader(bytes.NewReader(z), 777))
			var out bytes.Buffer
			buf := make([]byte, 1000)
			for {
				k, err := d.Read(buf)
				out.Write(buf[:k])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("n %d level %d: %v", n, level, err)
				}
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("n %d level %d: %d bytes out, want %d", n, level, out.Len(), len(data))
			}
		}
	}
}

// iotestReader returns at most n bytes per Read, so refills land at
// every place in the stream.
func iotestReader(r io.Reader, n int) io.Reader { return &shortReader{r, n} }

type shortReader struct {
	r io.Reader
	n int
}

func (s *shortReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }

// Every checkpoint a gzip file reports resumes to exactly the rest of
// the data: mid-member ones with their window, member starts without.
func TestCheckpointsResume(t *testing.T) {
	data := sample(3, 6<<20)
	for _, c := range []struct {
		level, members int
	}{{1, 1}, {6, 1}, {0, 1}, {6, 40}, {-2, 1}} {
		file := gz(data, c.level, c.members)
		z, err := NewGzipReader(bytes.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		var cks []Checkpoint
		z.Checkpoints(256<<10, func(ck Checkpoint) {
			ck.Window = bytes.Clone(ck.Window)
			cks = append(cks, ck)
		})
		out, err := io.ReadAll(z)
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("%+v: %d bytes, %v", c, len(out), err)
		}
		if len(cks) < 10 {
			t.Fatalf("%+v: %d checkpoints in %d bytes", c, len(cks), len(data))
		}
		members := 0
		for i, ck := range cks {
			if ck.Member {
				members++
			}
			if i > 0 && ck.Out-cks[i-1].Out < 256<<10 {
				t.Fatalf("%+v: checkpoints %d bytes apart", c, ck.Out-cks[i-1].Out)
			}
			r, err := ResumeGzip(bytes.NewReader(file[ck.In/8:]), ck)
			if err != nil {
				t.Fatalf("%+v: resume at %+v: %v", c, ck.Out, err)
			}
			rest, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(rest, data[ck.Out:]) {
				t.Fatalf("%+v: resumed at %d (bit %d, member %v): %d bytes, %v", c, ck.Out, ck.In, ck.Member, len(rest), err)
			}
		}
		if c.members > 1 && members == 0 {
			t.Errorf("%+v: no member checkpoint", c)
		}
	}
}

// ReaderAt reads any range as the plain data has it, in any order.
func TestReaderAt(t *testing.T) {
	data := sample(4, 5<<20)
	file := gz(data, 6, 1)
	z, _ := NewGzipReader(bytes.NewReader(file))
	var cks []Checkpoint
	z.Checkpoints(512<<10, func(ck Checkpoint) {
		ck.Window = bytes.Clone(ck.Window)
		cks = append(cks, ck)
	})
	io.Copy(io.Discard, z)
	find := func(off int64) (Checkpoint, error) {
		var best Checkpoint
		for _, c := range cks {
			if c.Out <= off {
				best = c
			}
		}
		return best, nil
	}
	if cks[0].Out != 0 || len(cks[0].Sums) == 0 {
		t.Fatalf("first checkpoint %+v", cks[0].Out)
	}
	for i, c := range cks {
		if i+1 < len(cks) && c.Out+c.Len != cks[i+1].Out || int64(len(c.Sums)) != (c.Len+SumEvery-1)/SumEvery {
			t.Fatalf("checkpoint %d: %d bytes from %d in %d sums", i, c.Len, c.Out, len(c.Sums))
		}
	}
	if last := cks[len(cks)-1]; last.Out+last.Len != int64(len(data)) {
		t.Fatalf("the last checkpoint's span ends at %d of %d", last.Out+last.Len, len(data))
	}
	ra := NewReaderAt(bytes.NewReader(file), int64(len(file)), find, 512<<10)
	rng := rand.New(rand.NewPCG(1, 1))
	for range 200 {
		off := rng.Int64N(int64(len(data)))
		p := make([]byte, rng.IntN(70000))
		n, err := ra.ReadAt(p, off)
		want := data[off:min(int64(len(data)), off+int64(len(p)))]
		if !bytes.Equal(p[:n], want) || (n < len(p)) != (err == io.EOF) {
			t.Fatalf("ReadAt(%d, %d): %d bytes, %v", len(p), off, n, err)
		}
	}
	// A byte flipped after the checkpoints were taken: every read of
	// what it changes fails, none returns other bytes.
	for trial := range 60 {
		bad := bytes.Clone(file)
		bad[len(bad)/4+trial*1000] ^= 0x10
		ra := NewReaderAt(bytes.NewReader(bad), int64(len(bad)), find, 512<<10)
		for range 20 {
			off := rng.Int64N(int64(len(data)))
			p := make([]byte, rng.IntN(70000))
			n, err := ra.ReadAt(p, off)
			want := data[off:min(int64(len(data)), off+int64(len(p)))]
			if !bytes.Equal(p[:n], want[:min(n, len(want))]) {
				t.Fatalf("damaged file, ReadAt(%d, %d): other bytes returned (%v)", len(p), off, err)
			}
			if err != nil && err != io.EOF && !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("damaged file: %v", err)
			}
		}
	}
}

// Damage ends in an error naming a file byte, never in wrong data
// passed off as right: a flipped byte fails the CRC at the latest, a cut
// file says it is cut.
func TestCorrupt(t *testing.T) {
	data := sample(5, 1<<20)
	file := gz(data, 6, 1)
	rng := rand.New(rand.NewPCG(2, 2))
	for range 300 {
		bad := bytes.Clone(file)
		at := 10 + rng.IntN(len(bad)-10)
		bad[at] ^= byte(1 + rng.IntN(255))
		z, err := NewGzipReader(bytes.NewReader(bad))
		if err != nil {
			continue
		}
		out, err := io.ReadAll(z)
		if err == nil {
			if !bytes.Equal(out, data) {
				t.Fatalf("flipped byte %d: no error, wrong data", at)
			}
			continue // e.g. another distance into a run of one byte: the same output
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrChecksum) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrHeader) {
			t.Fatalf("flipped byte %d: %v", at, err)
		}
	}
	for _, cut := range []int{5, 12, 100, len(file) / 2, len(file) - 3} {
		z, err := NewGzipReader(bytes.NewReader(file[:cut]))
		if err != nil {
			continue
		}
		if _, err := io.ReadAll(z); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
	// Trailing garbage after the last member is an error, as gzip says.
	z, _ := NewGzipReader(bytes.NewReader(append(bytes.Clone(file), "junk......"...)))
	if _, err := io.ReadAll(z); !errors.Is(err, ErrHeader) {
		t.Errorf("trailing garbage: %v", err)
	}
}

// FuzzInflate: whatever the input, the decoder agrees with
// compress/flate: the same bytes when it succeeds, an error when it
// fails; and resuming at any block start gives the rest.
func FuzzInflate(f *testing.F) {
	for _, level := range []int{0, 1, 6, 9, -2} {
		f.Add(deflate(f, sample(uint64(level+3), 5000), level))
	}
	f.Add([]byte{0x03, 0x00})
	f.Add([]byte{0xed, 0xc0, 0x01, 0x01, 0x00, 0x00, 0x00, 0x40, 0x20, 0xff, 0xaf, 0x46, 0x1c})
	f.Fuzz(func(t *testing.T, z []byte) {
		want, werr := io.ReadAll(flate.NewReader(bytes.NewReader(z)))
		d := NewDecoder(bytes.NewReader(z))
		var pos []Pos
		var wins [][]byte
		d.OnBlock = func(p Pos, _ bool, w []byte) {
			pos = append(pos, p)
			wins = append(wins, bytes.Clone(w))
		}
		got, gerr := io.ReadAll(d)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("compress/flate: %v; this decoder: %v", werr, gerr)
		}
		// On an error either may have withheld the last bytes it decoded.
		if k := min(len(got), len(want)); !bytes.Equal(got[:k], want[:k]) || (werr == nil && len(got) != len(want)) {
			t.Fatalf("output differs from compress/flate's")
		}
		if gerr != nil {
			return
		}
		for i, p := range pos {
			r, err := Resume(bytes.NewReader(z[p.In/8:]), uint(p.In%8), wins[i], p.Out)
			if err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(rest, want[p.Out:]) {
				t.Fatalf("resume at %+v: %d bytes, %v", p, len(rest), err)
			}
		}
	})
}

func BenchmarkGzip(b *testing.B) {
	data := sample(9, 32<<20)
	file := gz(data, 1, 1)
	b.Run("this", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := NewGzipReader(bytes.NewReader(file))
			io.Copy(io.Discard, z)
		}
	})
	b.Run("klauspost-gzip", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := kgzip.NewReader(bytes.NewReader(file))
			io.Copy(io.Discard, z)
		}
	})
	b.Run("compress-gzip", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := gzip.NewReader(bytes.NewReader(file))
			io.Copy(io.Discard, z)
		}
	})
}
