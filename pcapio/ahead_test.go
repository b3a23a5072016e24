package pcapio_test

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// readChecked reads every record of b, asking for gzip checkpoints every
// 256 KiB, decompressing ahead or not; it returns the records' offsets
// and data, the checkpoints (windows copied) and the final error.
func readChecked(t *testing.T, b []byte, ahead bool) (recs []string, cks []pcapio.GzipCheckpoint, err error) {
	t.Helper()
	r, err := pcapio.NewReader(bytes.NewReader(b), "x")
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	r.GzipCheckpoints(256<<10, func(c pcapio.GzipCheckpoint) {
		c.Window, c.Sums = bytes.Clone(c.Window), append([]uint32(nil), c.Sums...)
		cks = append(cks, c)
	})
	if ahead {
		r.DecompressAhead()
	}
	var x pcapio.Record
	for {
		if err := r.Next(&x); err != nil {
			if err == io.EOF {
				err = nil
			}
			return recs, cks, err
		}
		recs = append(recs, fmt.Sprintf("%d %x", x.Offset, x.Data))
	}
}

// Decompressing in a goroutine of its own changes nothing a reader sees:
// the same records, the same gzip checkpoints, the same error where the
// compressed data is cut short or damaged, at the same place.
func TestDecompressAheadSameAsInline(t *testing.T) {
	var plain bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 4, Bytes: 6 << 20, Active: 300, MeanPackets: 6}).WritePcap(&plain, capgen.PcapOptions{})
	var gz, gz2, zs bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&gz, 1)
	gw.Write(plain.Bytes())
	gw.Close()
	// Two members, as a file of appended gzip streams has.
	half := plain.Len() / 2
	for _, part := range [][]byte{plain.Bytes()[:half], plain.Bytes()[half:]} {
		w := gzip.NewWriter(&gz2)
		w.Write(part)
		w.Close()
	}
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(plain.Bytes())
	zw.Close()
	damaged := bytes.Clone(gz.Bytes())
	damaged[len(damaged)*2/3] ^= 0x5a
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"gzip", gz.Bytes()},
		{"gzip members", gz2.Bytes()},
		{"zstd", zs.Bytes()},
		{"gzip cut", gz.Bytes()[:gz.Len()*3/5]},
		{"zstd cut", zs.Bytes()[:zs.Len()*3/5]},
		{"gzip damaged", damaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRecs, wantCks, wantErr := readChecked(t, tc.b, false)
			gotRecs, gotCks, gotErr := readChecked(t, tc.b, true)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("error %v, inline %v", gotErr, wantErr)
			}
			if len(wantRecs) < 1000 {
				t.Fatalf("only %d records read inline: the case tests too little", len(wantRecs))
			}
			if !reflect.DeepEqual(gotRecs, wantRecs) {
				t.Fatalf("%d records, inline %d, or they differ", len(gotRecs), len(wantRecs))
			}
			if !reflect.DeepEqual(gotCks, wantCks) {
				t.Fatalf("%d checkpoints, inline %d, or they differ", len(gotCks), len(wantCks))
			}
			if tc.name == "gzip" && len(wantCks) < 3 {
				t.Fatalf("%d checkpoints: the case tests too little", len(wantCks))
			}
		})
	}
}

// Closing a reader that decompresses ahead, before its end, ends the
// goroutine.
func TestDecompressAheadClose(t *testing.T) {
	var plain, gz bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 5, Bytes: 8 << 20, Active: 100, MeanPackets: 6}).WritePcap(&plain, capgen.PcapOptions{})
	gw := gzip.NewWriter(&gz)
	gw.Write(plain.Bytes())
	gw.Close()
	before := runtime.NumGoroutine()
	for range 20 {
		r, err := pcapio.NewReader(bytes.NewReader(gz.Bytes()), "x")
		if err != nil {
			t.Fatal(err)
		}
		r.DecompressAhead()
		var x pcapio.Record
		for range 10 {
			if err := r.Next(&x); err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
		r.Close() // twice is fine
	}
	// The goroutines have returned when Close does; give the runtime a
	// moment to count them gone.
	for i := 0; runtime.NumGoroutine() > before && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after closing, %d before", n, before)
	}
}
