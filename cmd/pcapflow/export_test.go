package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/internal/capgen"
)

func filesUnder(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(p, ".parquet") {
			out[p] = info.ModTime()
		}
		return nil
	})
	return out
}

// export writes Parquet partitioned by day; run again after a capture is
// added, it writes new files for the new conversations and leaves the
// old files as they were; the conversations still open wait, unless
// --final. flows -F zeek prints one conn.log line per conversation.
func TestExportAndZeek(t *testing.T) {
	// Packets 100 ms apart: the capture lasts long enough that most
	// conversations close and end before its end.
	c := capgen.Mix(capgen.MixOptions{Seed: 12, Bytes: 2 << 20, Active: 40, MeanPackets: 30})
	t0 := c.Packets[0].TS
	for i := range c.Packets {
		c.Packets[i].TS = t0 + (c.Packets[i].TS-t0)*10000
	}
	parts := splitCapture(t, c, 2)
	dir := t.TempDir()
	var paths []string
	for i, b := range parts {
		p := filepath.Join(dir, "x.pcap"+strings.Repeat("1", i))
		os.WriteFile(p, b, 0o644)
		paths = append(paths, p)
	}
	idx := filepath.Join(t.TempDir(), "idx")
	out := filepath.Join(t.TempDir(), "export")
	if r := runCLI(t, nil, "index", "-i", idx, paths[0]); r.code != 0 {
		t.Fatal(r)
	}
	r := runCLI(t, nil, "export", "-i", idx, "-o", out, "--sensor", "s1")
	if r.code != 0 || !strings.Contains(r.stderr, "still open") {
		t.Fatalf("export: %+v", r)
	}
	first := filesUnder(t, out)
	for p := range first {
		if !strings.Contains(p, "date=") {
			t.Errorf("%s is not in a day partition", p)
		}
	}
	time.Sleep(10 * time.Millisecond)
	runCLI(t, nil, "index", "-i", idx, paths[1])
	r = runCLI(t, nil, "export", "-i", idx, "-o", out, "--sensor", "s1", "--final")
	if r.code != 0 || !strings.Contains(r.stderr, "exported before") {
		t.Fatalf("the second export: %+v", r)
	}
	second := filesUnder(t, out)
	for p, mt := range first {
		if !second[p].Equal(mt) {
			t.Errorf("%s was rewritten", p)
		}
	}
	if len(second) <= len(first) {
		t.Errorf("the second export wrote no file: %d then %d", len(first), len(second))
	}
	// Every conversation once across both exports: the state says how many.
	var st struct{ Pending []uint64 }
	b, _ := os.ReadFile(filepath.Join(out, "_pcapflow_export.json"))
	json.Unmarshal(b, &st)
	if len(st.Pending) != 0 {
		t.Errorf("after --final, %d conversations pending", len(st.Pending))
	}
	// Another sensor's name into the same directory is refused.
	if r := runCLI(t, nil, "export", "-i", idx, "-o", out, "--sensor", "s2"); r.code == 0 {
		t.Error("an export of another sensor into the same directory")
	}
	// An export inside the index is refused.
	if r := runCLI(t, nil, "export", "-i", idx, "-o", filepath.Join(idx, "x")); r.code != 2 {
		t.Errorf("export into the index: %+v", r)
	}
	// -F zeek: a conn.log line per conversation, the --bidir rows.
	z := runCLI(t, nil, "flows", "-i", idx, "-F", "zeek")
	bidir := runCLI(t, nil, "flows", "-i", idx, "--bidir", "-F", "json")
	zl := strings.Split(strings.TrimSpace(z.stdout), "\n")
	bl := strings.Split(strings.TrimSpace(bidir.stdout), "\n")
	if z.code != 0 || len(zl) != len(bl) {
		t.Fatalf("-F zeek: %d lines, --bidir %d", len(zl), len(bl))
	}
	var uids []string
	for i, l := range zl {
		var c map[string]any
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		var conv map[string]any
		json.Unmarshal([]byte(bl[i]), &conv)
		if c["id.orig_h"] != conv["a"] || c["id.resp_p"].(float64) != conv["bport"].(float64) || c["orig_pkts"].(float64) != conv["a_to_b_packets"].(float64) {
			t.Fatalf("line %d: %v\nagainst %v", i, c, conv)
		}
		uids = append(uids, c["uid"].(string))
	}
	sort.Strings(uids)
	for i := 1; i < len(uids); i++ {
		if uids[i] == uids[i-1] {
			t.Fatalf("uid %s twice", uids[i])
		}
	}
	again := runCLI(t, nil, "flows", "-i", idx, "-F", "zeek")
	if again.stdout != z.stdout {
		t.Error("uids are not stable from run to run")
	}
}
