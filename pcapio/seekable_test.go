package pcapio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"

	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

func mixPcap(t testing.TB, ng bool) []byte {
	var b bytes.Buffer
	c := capgen.Mix(capgen.MixOptions{Seed: 3, Bytes: 3 << 20, Active: 100})
	var err error
	if ng {
		err = c.WritePcapng(&b, capgen.NgOptions{Interfaces: []capgen.NgInterface{{Link: 1}}, SectionEvery: 2000, Junk: 500})
	} else {
		err = c.WritePcap(&b, capgen.PcapOptions{Nanos: true})
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func recordOffsets(t testing.TB, data []byte) map[int64]bool {
	r, err := pcapio.NewReader(bytes.NewReader(data), "x")
	if err != nil {
		t.Fatal(err)
	}
	offs := map[int64]bool{}
	var rec pcapio.Record
	for r.Next(&rec) == nil {
		offs[rec.Offset] = true
	}
	return offs
}

// frameStarts reads the seek table (as the format's spec lays it out,
// independently of the reader under test) and returns where each frame
// begins in the capture.
func frameStarts(t *testing.T, z []byte) []int64 {
	t.Helper()
	foot := z[len(z)-9:]
	n := int(binary.LittleEndian.Uint32(foot))
	entry := 8
	if foot[4]&0x80 != 0 {
		entry = 12
	}
	table := z[len(z)-9-n*entry : len(z)-9]
	var starts []int64
	var at int64
	for i := 0; i < n; i++ {
		starts = append(starts, at)
		at += int64(binary.LittleEndian.Uint32(table[i*entry+4:]))
	}
	return starts
}

// A capture compressed seekably decompresses, with any zstd decoder, to
// the capture byte for byte; its frames start at records; any range of
// it reads back exactly through the seek table.
func TestSeekableRoundTrip(t *testing.T) {
	for _, ng := range []bool{false, true} {
		plain := mixPcap(t, ng)
		var z bytes.Buffer
		st, err := pcapio.WriteSeekable(&z, bytes.NewReader(plain), "x", pcapio.SeekableOptions{FrameSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		if st.In != int64(len(plain)) || st.Frames < 10 {
			t.Fatalf("in %d of %d, %d frames", st.In, len(plain), st.Frames)
		}
		dec, _ := zstd.NewReader(bytes.NewReader(z.Bytes()))
		back, err := io.ReadAll(dec)
		dec.Close()
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("decompressed: %d bytes, %v; want the %d of the capture", len(back), err, len(plain))
		}
		sr, err := pcapio.OpenSeekable(bytes.NewReader(z.Bytes()), int64(z.Len()), "x")
		if err != nil {
			t.Fatal(err)
		}
		starts := frameStarts(t, z.Bytes())
		if sr.Size() != int64(len(plain)) || len(starts) != st.Frames || st.Out != int64(z.Len()) {
			t.Fatalf("table: %d bytes in %d frames (%d written, %d said)", sr.Size(), len(starts), z.Len(), st.Out)
		}
		offs := recordOffsets(t, plain)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 200; i++ {
			off := rng.Int64N(int64(len(plain)))
			n := min(int64(rng.IntN(200<<10)), int64(len(plain))-off)
			got := make([]byte, n)
			if _, err := sr.ReadAt(got, off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain[off:off+n]) {
				t.Fatalf("ReadAt(%d, %d) differs", off, n)
			}
		}
		for i, off := range starts[1:] {
			if !offs[off] {
				t.Fatalf("frame %d starts at %d, not at a record", i+1, off)
			}
		}
	}
	// Compressed input is decompressed first; an empty or damaged one is
	// an error.
	if _, err := pcapio.WriteSeekable(io.Discard, bytes.NewReader([]byte("not a capture")), "x", pcapio.SeekableOptions{}); err == nil {
		t.Error("garbage compressed")
	}
}

// Damage: a flipped byte in a frame, a truncated or altered table; each
// is an error that names the offset, never wrong bytes.
func TestSeekableDamage(t *testing.T) {
	plain := mixPcap(t, false)
	var z bytes.Buffer
	if _, err := pcapio.WriteSeekable(&z, bytes.NewReader(plain), "x", pcapio.SeekableOptions{FrameSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	good := z.Bytes()
	flip := bytes.Clone(good)
	flip[len(good)/3] ^= 0x40
	sr, err := pcapio.OpenSeekable(bytes.NewReader(flip), int64(len(flip)), "x")
	if err != nil {
		t.Fatal(err)
	}
	all := make([]byte, sr.Size())
	if _, err := sr.ReadAt(all, 0); err == nil || !bytes.Contains([]byte(err.Error()), []byte("offset ")) {
		t.Errorf("a flipped byte: %v", err)
	}
	for name, b := range map[string][]byte{
		"truncated table": good[:len(good)-20],
		"table cut":       append(bytes.Clone(good[:len(good)-30]), good[len(good)-9:]...),
		"more frames":     func() []byte { x := bytes.Clone(good); x[len(x)-9]++; return x }(),
		"reserved bits":   func() []byte { x := bytes.Clone(good); x[len(x)-5] = 0x04; return x }(),
	} {
		_, err := pcapio.OpenSeekable(bytes.NewReader(b), int64(len(b)), "x")
		if err == nil {
			t.Errorf("%s: opened", name)
		} else if !errors.Is(err, pcapio.ErrNotSeekable) && !errors.Is(err, pcapio.ErrSeekTable) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzSeekTable: any bytes either are refused or read back without
// panicking, every ReadAt within the size ending in bytes or an error.
func FuzzSeekTable(f *testing.F) {
	var z bytes.Buffer
	pcapio.WriteSeekable(&z, bytes.NewReader(mixPcap(f, false)[:20000]), "x", pcapio.SeekableOptions{FrameSize: 4 << 10})
	f.Add(z.Bytes())
	f.Add(z.Bytes()[z.Len()-40:])
	f.Fuzz(func(t *testing.T, b []byte) {
		sr, err := pcapio.OpenSeekable(bytes.NewReader(b), int64(len(b)), "x")
		if err != nil {
			return
		}
		if sr.Size() > 64<<20 {
			return
		}
		buf := make([]byte, min(sr.Size(), 1<<16))
		sr.ReadAt(buf, 0)
		sr.ReadAt(buf[:min(len(buf), 10)], max(0, sr.Size()-10))
	})
}
