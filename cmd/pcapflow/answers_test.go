package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/pcapflow/pcapflow/internal/corpus"
)

// A selection writes each capture record at most once, however many of
// the selected flows it belongs to: a tunnelled frame is in its tunnel's
// flow and in the flow it carries, and used to be written twice.
func TestExtractWritesEachRecordOnce(t *testing.T) {
	dir := corpus.Dir(t)
	for _, tc := range []struct {
		file string
		args []string
	}{
		{"zeek__tunnels_vxlan-encapsulated-http.pcap", nil},
		{"zeek__tunnels_gre-aruba.pcap", nil},
		{"zeek__tunnels_gre-sample.pcap", []string{"tcp", "or", "outer"}},
	} {
		in := filepath.Join(dir, tc.file)
		want := countRecords(t, in)
		for _, indexed := range []bool{false, true} {
			src := []string{in}
			if indexed {
				idx := filepath.Join(t.TempDir(), "idx")
				if r := runCLI(t, nil, "index", "-i", idx, in); r.code != 0 {
					t.Fatalf("index: %+v", r)
				}
				src = []string{"-i", idx}
			}
			out := filepath.Join(t.TempDir(), "out.pcap")
			args := append(append([]string{"extract"}, src...), "-w", out)
			if r := runCLI(t, nil, append(args, tc.args...)...); r.code != 0 {
				t.Fatalf("%s: %+v", tc.file, r)
			}
			if got := countRecords(t, out); got != want {
				t.Errorf("%s (indexed %v): extracted %d records from a %d-record capture", tc.file, indexed, got, want)
			}
			// count counts the same records: each frame once.
			r := runCLI(t, nil, append(append([]string{"count", "-F", "json"}, src...), tc.args...)...)
			var c struct{ Flows, Packets int }
			if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || c.Packets != want || c.Flows < 2 {
				t.Errorf("%s (indexed %v): count says %s, the capture has %d records", tc.file, indexed, r.stdout, want)
			}
		}
	}
	// compat's port range selects outer and inner flows alike.
	in := filepath.Join(dir, "zeek__tunnels_vxlan-encapsulated-http.pcap")
	out := filepath.Join(t.TempDir(), "ports.pcap")
	if r := runCLI(t, nil, "compat", "--extract-port", "0", "65535", "-o", out, "--disable-display", in); r.code != 0 {
		t.Fatalf("compat: %+v", r)
	}
	if got, want := countRecords(t, out), countRecords(t, in); got != want {
		t.Errorf("compat --extract-port 0 65535: %d records from a %d-record capture", got, want)
	}
}
