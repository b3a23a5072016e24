package index_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// recordsOf returns the raw records of flows ids (nil: every flow), in
// the order Records delivers them.
func recordsOf(t *testing.T, r index.Reader, ids []uint64) ([]byte, error) {
	t.Helper()
	if ids == nil {
		for id := uint64(1); id <= r.NumFlows(); id++ {
			ids = append(ids, id)
		}
	}
	var b bytes.Buffer
	err := index.Records(context.Background(), r, ids, func(_ int, id uint64, rec *pcapio.Record) error {
		fmt.Fprintf(&b, "%d %d %d ", id, rec.Index, rec.Offset)
		b.Write(rec.Raw)
		return nil
	})
	return b.Bytes(), err
}

func gzipParts(data []byte, members int, level int) []byte {
	var z bytes.Buffer
	step := len(data)/members + 1
	for i := 0; i < len(data); i += step {
		w, _ := gzip.NewWriterLevel(&z, level)
		w.Write(data[i:min(len(data), i+step)])
		w.Close()
	}
	return z.Bytes()
}

// An index of a gzip capture keeps checkpoints (block starts with their
// window, member starts without) and reads every flow's records from
// them: the same records as from the plain capture, each flow alone and
// all at once.
func TestGzipCheckpoints(t *testing.T) {
	b, dir, p := plainMix(t, 8)
	ids := []uint64{1, 2, p.NumFlows() / 2, p.NumFlows()}
	for id := uint64(3); id < p.NumFlows(); id += p.NumFlows() / 40 {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	want := map[uint64][]byte{}
	for _, id := range ids {
		want[id], _ = recordsOf(t, p, []uint64{id})
	}
	all, err := recordsOf(t, p, nil)
	if err != nil || len(all) < b.Len() {
		t.Fatalf("every flow of the plain capture: %d bytes, %v", len(all), err)
	}
	for _, c := range []struct {
		members, level int
	}{{1, 1}, {1, 9}, {30, 6}} {
		name := fmt.Sprintf("x%d-%d.pcap.gz", c.members, c.level)
		gz := filepath.Join(dir, name)
		z := indexCompressed(t, gz, gzipParts(b.Bytes(), c.members, c.level))
		pts, err := index.ResumePoints(z, 0)
		if err != nil || len(pts) < 10 {
			t.Fatalf("%s: %d checkpoints, %v", name, len(pts), err)
		}
		members := 0
		for _, pt := range pts {
			if pt.Out == 0 {
				continue // the file's start
			}
			if pt.Member {
				members++
			} else if len(pt.Window) != 32<<10 {
				t.Fatalf("%s: a checkpoint at %d with a %d-byte window", name, pt.Out, len(pt.Window))
			}
		}
		if (c.members > 1) != (members > 0) {
			t.Errorf("%s: %d of %d checkpoints at member starts", name, members, len(pts))
		}
		for _, id := range ids {
			if got, err := recordsOf(t, z, []uint64{id}); err != nil || !bytes.Equal(got, want[id]) {
				t.Fatalf("%s: flow %d: %d bytes (%v), want %d", name, id, len(got), err, len(want[id]))
			}
		}
		if got, err := recordsOf(t, z, nil); err != nil || !bytes.Equal(got, all) {
			t.Fatalf("%s: every flow: %v", name, err)
		}
		z.Close()
	}
}

// A gzip capture damaged after it was indexed: extraction ends in an
// error naming the file and the byte, never in other records.
func TestGzipDamagedAfterIndex(t *testing.T) {
	var b bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 9, Bytes: 3 << 20, Active: 100}).WritePcap(&b, capgen.PcapOptions{})
	dir := t.TempDir()
	gz := filepath.Join(dir, "x.pcap.gz")
	data := gzipParts(b.Bytes(), 1, 6)
	z := indexCompressed(t, gz, data)
	good, err := recordsOf(t, z, nil)
	if err != nil || len(good) < len(b.Bytes()) {
		t.Fatalf("every flow: %d bytes, %v", len(good), err)
	}
	// Flip a byte in place (same size, so the identity check may pass
	// when the mtime is restored; the reader must catch it either way).
	st, _ := os.Stat(gz)
	data[len(data)*2/3] ^= 0x55
	os.WriteFile(gz, data, 0o644)
	os.Chtimes(gz, st.ModTime(), st.ModTime())
	got, err := recordsOf(t, z, nil)
	if err == nil {
		t.Fatalf("a damaged capture read without an error (same records: %v)", bytes.Equal(got, good))
	}
	var pe *pcapio.Error
	if !errors.As(err, &pe) || pe.File != gz {
		t.Errorf("error does not name the capture and offset: %v", err)
	}
	t.Log(err)
}

// A zstd capture of several frames (as pzstd writes, or files
// concatenated) gets checkpoints at frame starts, and reads every flow's
// records from them as the plain capture has them; one frame does not.
func TestZstdFrameCheckpoints(t *testing.T) {
	b, dir, p := plainMix(t, 10)
	all, err := recordsOf(t, p, nil)
	if err != nil || len(all) < b.Len() {
		t.Fatalf("every flow of the plain capture: %d bytes, %v", len(all), err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	var many bytes.Buffer
	data := b.Bytes()
	for i := 0; i < len(data); i += 100 << 10 {
		many.Write(enc.EncodeAll(data[i:min(len(data), i+100<<10)], nil))
	}
	for _, c := range []struct {
		name   string
		file   []byte
		points bool
	}{
		{"frames.pcap.zst", many.Bytes(), true},
		{"one.pcap.zst", enc.EncodeAll(data, nil), false},
	} {
		s := indexCompressed(t, filepath.Join(dir, c.name), c.file)
		pts, _ := index.ResumePoints(s, 0)
		if c.points != (len(pts) > 10) {
			t.Errorf("%s: %d checkpoints", c.name, len(pts))
		}
		for _, pt := range pts {
			if !pt.Member || pt.In%8 != 0 {
				t.Fatalf("%s: checkpoint %+v is no frame start", c.name, pt)
			}
		}
		got, err := recordsOf(t, s, nil)
		if err != nil || !bytes.Equal(got, all) {
			t.Errorf("%s: every flow: %d bytes (%v), want %d", c.name, len(got), err, len(all))
		}
		for _, id := range []uint64{1, s.NumFlows() / 2, s.NumFlows()} {
			want, _ := recordsOf(t, p, []uint64{id})
			if got, err := recordsOf(t, s, []uint64{id}); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: flow %d: %v", c.name, id, err)
			}
		}
		s.Close()
	}
}

// A zstd capture of several frames damaged after indexing: the frame's
// checksum fails before any of its bytes are used, and the error names
// the capture.
func TestZstdFramesDamagedAfterIndex(t *testing.T) {
	var b bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 11, Bytes: 3 << 20, Active: 100}).WritePcap(&b, capgen.PcapOptions{})
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	var z bytes.Buffer
	data := b.Bytes()
	for i := 0; i < len(data); i += 200 << 10 {
		z.Write(enc.EncodeAll(data[i:min(len(data), i+200<<10)], nil))
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pcap.zst")
	file := z.Bytes()
	s := indexCompressed(t, path, file)
	good, err := recordsOf(t, s, nil)
	if err != nil || len(good) < b.Len() {
		t.Fatalf("every flow: %d bytes, %v", len(good), err)
	}
	st, _ := os.Stat(path)
	file[len(file)/2] ^= 0x20
	os.WriteFile(path, file, 0o644)
	os.Chtimes(path, st.ModTime(), st.ModTime())
	got, err := recordsOf(t, s, nil)
	if err == nil {
		t.Fatalf("a damaged capture read without an error (same records: %v)", bytes.Equal(got, good))
	}
	if !bytes.HasPrefix(good, got) {
		t.Errorf("records before the error differ from the undamaged capture's")
	}
	var pe *pcapio.Error
	if !errors.As(err, &pe) || pe.File != path {
		t.Errorf("error does not name the capture and offset: %v", err)
	}
	t.Log(err)
}

// indexCompressed writes data to path and opens an index of it, in
// path.idx, with checkpoints every 256 KiB.
func indexCompressed(t *testing.T, path string, data []byte) *index.Store {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var o index.Options
	index.SetGzipEvery(&o, 256<<10)
	if _, err := index.Build(context.Background(), path+".idx", []string{path}, o); err != nil {
		t.Fatal(err)
	}
	s, err := index.Open(path + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// plainMix writes a 6 MiB generated capture (seed) to dir/x.pcap and
// opens its index, for the compressed copies to be checked against.
func plainMix(t *testing.T, seed uint64) (b *bytes.Buffer, dir string, p *index.Store) {
	b = new(bytes.Buffer)
	capgen.Mix(capgen.MixOptions{Seed: seed, Bytes: 6 << 20, Active: 300, MeanPackets: 6}).WritePcap(b, capgen.PcapOptions{})
	dir = t.TempDir()
	plain := filepath.Join(dir, "x.pcap")
	if err := os.WriteFile(plain, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p = build(t, filepath.Join(dir, "p"), plain)
	t.Cleanup(func() { p.Close() })
	return b, dir, p
}
