package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// compress writes the seekable format: zstd restores the capture byte
// for byte, and an index of the compressed file answers extract,
// streams and follow with the plain capture's bytes, reading only the
// frames it needs. A zstd file without a seek table is indexed with a
// warning that says how to make it seekable.
func TestCompressSeekable(t *testing.T) {
	var b bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 5, Bytes: 8 << 20, Active: 200, MeanPackets: 6}).WritePcap(&b, capgen.PcapOptions{Nanos: true})
	dir := t.TempDir()
	plain := filepath.Join(dir, "x.pcap")
	os.WriteFile(plain, b.Bytes(), 0o644)
	z := filepath.Join(dir, "x.pcap.zst")
	if r := runCLI(t, nil, "compress", plain, "-o", z, "--frame", "64K"); r.code != 0 || !strings.Contains(r.stderr, "frames") {
		t.Fatalf("compress: %+v", r)
	}
	if r := runCLI(t, nil, "compress", plain, "-o", plain, "--force"); r.code != 2 {
		t.Errorf("compress onto its input: %+v", r)
	}
	if r := runCLI(t, nil, "compress", plain, "-o", z); r.code != 2 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("compress over an existing output: %+v", r)
	}
	// A damaged capture: an error with the offset, and no output.
	bad := append([]byte(nil), b.Bytes()...)
	binary.LittleEndian.PutUint32(bad[24+8:], 0x7fffffff) // the first record's captured length
	badPath := filepath.Join(dir, "bad.pcap")
	os.WriteFile(badPath, bad, 0o644)
	badOut := filepath.Join(dir, "bad.pcap.zst")
	if r := runCLI(t, nil, "compress", badPath, "-o", badOut); r.code != 1 || !strings.Contains(r.stderr, "offset 24") {
		t.Errorf("compress of a damaged capture: %+v", r)
	}
	if _, err := os.Stat(badOut); err == nil {
		t.Error("a failed compress left its output")
	}
	zb, _ := os.ReadFile(z)
	dec, _ := zstd.NewReader(nil) // a stream decoder here would hold the decoder DecodeAll waits for
	back, _ := dec.DecodeAll(zb, nil)
	if !bytes.Equal(back, b.Bytes()) {
		t.Fatal("the seekable file does not decompress to the capture")
	}
	if _, err := exec.LookPath("zstd"); err == nil {
		out, err := exec.Command("zstd", "-d", "-c", z).Output()
		if err != nil || !bytes.Equal(out, b.Bytes()) {
			t.Fatalf("zstd -d: %v, %d bytes", err, len(out))
		}
	}
	pidx, zidx, gidx := filepath.Join(t.TempDir(), "p"), filepath.Join(t.TempDir(), "z"), filepath.Join(t.TempDir(), "g")
	runCLI(t, nil, "index", "-i", pidx, plain)
	if r := runCLI(t, nil, "index", "-i", zidx, z); r.code != 0 || strings.Contains(r.stderr, "seek table") {
		t.Fatalf("index of the seekable file: %+v", r)
	}
	// And gzip, read from the index's checkpoints.
	gz := filepath.Join(dir, "x.pcap.gz")
	var gzb bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&gzb, gzip.BestSpeed)
	gw.Write(b.Bytes())
	gw.Close()
	os.WriteFile(gz, gzb.Bytes(), 0o644)
	if r := runCLI(t, nil, "index", "-i", gidx, gz); r.code != 0 {
		t.Fatalf("index of the gzip file: %+v", r)
	}
	for _, args := range [][]string{
		{"extract", "-w", "-", "flow", "1", "or", "flow", "500"},
		{"extract", "-w", "-"},
		{"streams", "-w", "-", "--tcpheader", "tcp", "and", "port", "80"},
		{"follow", "flow", "7"},
	} {
		p := runCLI(t, nil, append([]string{args[0], "-i", pidx}, args[1:]...)...)
		for _, idx := range []string{zidx, gidx} {
			q := runCLI(t, nil, append([]string{args[0], "-i", idx}, args[1:]...)...)
			if p.code != 0 || q.code != 0 || p.stdout != q.stdout || len(p.stdout) == 0 {
				t.Errorf("%v: plain %d (%d bytes), %s %d (%d bytes) %s", args, p.code, len(p.stdout), filepath.Base(idx), q.code, len(q.stdout), q.stderr)
			}
		}
	}
	// One frame, no table (as zstd writes): a warning at index time.
	one := filepath.Join(dir, "one.pcap.zst")
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(one, enc.EncodeAll(b.Bytes(), nil), 0o644)
	if r := runCLI(t, nil, "index", one); r.code != 0 || !strings.Contains(r.stderr, "pcapflow compress") {
		t.Errorf("a zstd file without a seek table: %+v", r)
	}
}
