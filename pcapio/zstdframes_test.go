package pcapio_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/pcapio"
)

// ZstdFrames finds every frame by its headers, steps over skippable
// frames, and refuses frames that do not give their size and files cut
// short.
func TestZstdFrames(t *testing.T) {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	var f bytes.Buffer
	var want []pcapio.ZstdFrame
	out := int64(0)
	for i, n := range []int{1000, 70000, 1, 300000, 5} {
		if i == 2 { // a skippable frame between data frames
			f.Write([]byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'})
		}
		data := bytes.Repeat([]byte{byte(i), 1, 2, 3, byte(n)}, n/5+1)[:n]
		want = append(want, pcapio.ZstdFrame{In: int64(f.Len()), Out: out})
		f.Write(enc.EncodeAll(data, nil))
		out += int64(n)
	}
	got, err := pcapio.ZstdFrames(bytes.NewReader(f.Bytes()), int64(f.Len()))
	if err != nil || len(got) != len(want) {
		t.Fatalf("%d frames, %v; want %d", len(got), err, len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("frame %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, cut := range []int{3, 10, f.Len() / 2, f.Len() - 1} {
		if _, err := pcapio.ZstdFrames(bytes.NewReader(f.Bytes()[:cut]), int64(cut)); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
	// A streamed frame does not say its size: a small one is measured,
	// a large one refused.
	for _, n := range []int{100000, 40 << 20} {
		var s bytes.Buffer
		w, _ := zstd.NewWriter(&s, zstd.WithEncoderLevel(zstd.SpeedFastest))
		rnd := make([]byte, n)
		for i := range rnd {
			rnd[i] = byte(i*7919 ^ i>>9)
		}
		w.Write(rnd)
		w.Close()
		fr, err := pcapio.ZstdFrames(bytes.NewReader(s.Bytes()), int64(s.Len()))
		switch {
		case s.Len() <= 8<<20 && (err != nil || len(fr) != 1):
			t.Errorf("a streamed frame of %d bytes: %v, %d frames", s.Len(), err, len(fr))
		case s.Len() > 8<<20 && !errors.Is(err, pcapio.ErrNoFrameSizes):
			t.Errorf("a streamed frame of %d bytes: %v", s.Len(), err)
		}
	}
}

// FuzzZstdFrames: any file ends in frames or an error, never a panic or
// frames out of order.
func FuzzZstdFrames(f *testing.F) {
	enc, _ := zstd.NewWriter(nil)
	var b bytes.Buffer
	b.Write(enc.EncodeAll(bytes.Repeat([]byte("abc"), 1000), nil))
	b.Write([]byte{0x50, 0x2a, 0x4d, 0x18, 1, 0, 0, 0, 'x'})
	b.Write(enc.EncodeAll([]byte("hello"), nil))
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, z []byte) {
		fr, err := pcapio.ZstdFrames(bytes.NewReader(z), int64(len(z)))
		if err != nil {
			return
		}
		for i := 1; i < len(fr); i++ {
			if fr[i].In <= fr[i-1].In || fr[i].Out <= fr[i-1].Out {
				t.Fatalf("frames out of order: %+v", fr)
			}
		}
	})
}
