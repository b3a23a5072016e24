package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command, given a capture that cannot be read, a damaged one or
// a missing one, fails with exit status 1 and names the file (and the
// byte offset of the damage); none answers empty, none leaves an output
// or an index behind.
func TestEveryCommandFailsLoudly(t *testing.T) {
	dir := t.TempDir()
	good := basicCapture(t)
	data, _ := os.ReadFile(good)
	bad := filepath.Join(dir, "bad.pcap")
	os.WriteFile(bad, []byte("this is not a capture at all, not even close"), 0o644)
	// Damaged in the middle: the third record's length is absurd.
	damaged := filepath.Join(dir, "damaged.pcap")
	d := append([]byte(nil), data...)
	off := 24
	for i := 0; i < 2; i++ {
		off += 16 + int(d[off+8]) | int(d[off+9])<<8
	}
	d[off+8], d[off+9], d[off+10], d[off+11] = 0xff, 0xff, 0xff, 0x7f
	os.WriteFile(damaged, d, 0o644)
	missing := filepath.Join(dir, "missing.pcap")
	out := filepath.Join(dir, "out")
	commands := [][]string{
		{"flows"}, {"count"}, {"explain", "tcp"}, {"extract", "-w", out}, {"streams", "-w", out},
		{"follow", "flow", "1"}, {"index"}, {"compat"},
	}
	for _, c := range []struct {
		name, path, says string
	}{
		{"unreadable", bad, "offset 0"},
		{"damaged", damaged, "offset "},
		{"missing", missing, "missing.pcap"},
	} {
		for _, cmd := range commands {
			args := append([]string{cmd[0], c.path}, cmd[1:]...)
			if cmd[0] == "compat" {
				args = []string{"compat", c.path}
			}
			r := runCLI(t, nil, args...)
			if r.code != 1 || !strings.Contains(r.stderr, filepath.Base(c.path)) || !strings.Contains(r.stderr, c.says) {
				t.Errorf("%s %v: %+v", c.name, args, r)
			}
			if c.name == "unreadable" && cmd[0] != "compat" && r.stdout != "" && cmd[0] != "explain" {
				t.Errorf("%s %v answered: %q", c.name, args, r.stdout)
			}
			if _, err := os.Stat(out); err == nil && c.name != "damaged" {
				t.Errorf("%s %v left an output", c.name, args)
				os.Remove(out)
			}
			os.Remove(out)
			if _, err := os.Stat(c.path + ".pfidx"); err == nil && c.name != "damaged" {
				t.Errorf("%s %v left an index", c.name, args)
			}
		}
	}
	// The damaged capture answers up to the damage, and says so.
	r := runCLI(t, nil, "count", "--scan", damaged)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "flows ") || r.stdout == "flows 0 packets 0 bytes 0\n" {
		t.Errorf("the flows before the damage: %+v", r)
	}
	// A directory with a bad capture among good ones: scan and index go
	// on with the rest, name the bad one, and fail at the end.
	arch := t.TempDir()
	os.WriteFile(filepath.Join(arch, "a.pcap"), data, 0o644)
	os.WriteFile(filepath.Join(arch, "b.pcap"), shiftPcap(t, good, 3600e9), 0o644)
	os.WriteFile(filepath.Join(arch, "c.pcap"), append([]byte(nil), d...), 0o644)
	scan := runCLI(t, nil, "count", arch)
	idx := filepath.Join(t.TempDir(), "idx")
	ix := runCLI(t, nil, "index", "-i", idx, arch)
	after := runCLI(t, nil, "count", "-i", idx)
	if scan.code != 1 || ix.code != 1 || !strings.Contains(scan.stderr, "c.pcap") || !strings.Contains(ix.stderr, "c.pcap") {
		t.Errorf("a damaged file in a directory: scan %+v, index %+v", scan, ix)
	}
	// The index answers what the scan does, and says again, as the scan
	// does, that c.pcap was read only up to its damage.
	if after.code != 1 || after.stdout != scan.stdout || scan.stdout == "" || !strings.Contains(after.stderr, "c.pcap: offset ") {
		t.Errorf("the index of the directory answers %+v, the scan %q", after, scan.stdout)
	}
	// With a capture moved away, what needs no packets still answers;
	// what reads packets names the capture.
	moved := filepath.Join(t.TempDir(), "moved.pcap")
	os.WriteFile(moved, data, 0o644)
	midx := moved + ".pfidx"
	runCLI(t, nil, "index", moved)
	os.Rename(moved, moved+".gone")
	for _, args := range [][]string{{"count", "-i", midx}, {"flows", "-i", midx}, {"explain", "-i", midx, "tcp"}} {
		if r := runCLI(t, nil, args...); r.code != 0 || r.stdout == "" {
			t.Errorf("%v without the capture: %+v", args, r)
		}
	}
	if r := runCLI(t, nil, "extract", "-i", midx, "-w", out, "flow", "1"); r.code != 1 || !strings.Contains(r.stderr, "moved.pcap") {
		t.Errorf("extract without the capture: %+v", r)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed extract left its output")
	}
}

// TestBadFilterFirst: a filter that does not parse says only what is
// wrong with it (not the index's warnings), and leaves the index
// unlocked for the index run after it, as does a command stopped by a
// capture that is missing.
func TestBadFilterFirst(t *testing.T) {
	p := basicCapture(t)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the last record short: the index warns about it when opened.
	if err := os.WriteFile(p, b[:len(b)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(t.TempDir(), "idx")
	if r := runCLI(t, nil, "index", "-i", idx, p); r.code != 0 {
		t.Fatalf("index: %+v", r)
	}
	good := runCLI(t, nil, "count", "-i", idx, "tcp")
	if good.code != 0 || !strings.Contains(good.stderr, "warning") {
		t.Fatalf("count on a capture cut short: want exit 0 and a warning: %+v", good)
	}
	for i := 0; i < 3; i++ {
		bad := runCLI(t, nil, "count", "-i", idx, "port 80 and")
		if bad.code != 2 || strings.Contains(bad.stderr, "warning") || !strings.Contains(bad.stderr, "^") {
			t.Fatalf("bad filter: want exit 2 and only the filter's error: %+v", bad)
		}
	}
	// The index opens while the filter parses (prepare): a capture
	// missing from its restriction stops the command after the open.
	missing := filepath.Join(t.TempDir(), "missing.pcap")
	if r := runCLI(t, nil, "count", "-i", idx, missing, "tcp"); r.code == 0 || !strings.Contains(r.stderr, "missing.pcap") {
		t.Fatalf("count of a missing capture: want an error naming it: %+v", r)
	}
	if r := runCLI(t, nil, "index", "-i", idx, p); r.code != 0 {
		t.Fatalf("index after the bad filters: %+v", r)
	}
}

// TestNoCapturesFound: captures given that hold none (an empty
// directory, one of other files) are an error that names them; a query
// with -i never answers the whole archive for them, and an index run
// over nothing new says so.
func TestNoCapturesFound(t *testing.T) {
	p := basicCapture(t)
	idx := filepath.Join(t.TempDir(), "idx")
	if r := runCLI(t, nil, "index", "-i", idx, p); r.code != 0 {
		t.Fatalf("index: %+v", r)
	}
	empty := t.TempDir()
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("not a capture\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newIdx := filepath.Join(t.TempDir(), "new")
	for _, tc := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"count -i of an empty directory", []string{"count", "-i", idx, empty, "tcp"}, []string{"no captures in " + empty}},
		{"flows of an empty directory", []string{"flows", empty}, []string{"no captures in " + empty}},
		{"extract -i of a directory of other files", []string{"extract", "-i", idx, "-w", filepath.Join(t.TempDir(), "o.pcap"), other, "tcp"},
			[]string{"passed over 1 file", "notes.txt", "no captures in " + other}},
		{"index of an empty directory", []string{"index", "-i", newIdx, empty}, []string{"no captures in " + empty, "nothing to index"}},
		{"index of a directory of other files", []string{"index", "-i", newIdx, other}, []string{"passed over 1 file", "no captures in " + other}},
	} {
		r := runCLI(t, nil, tc.args...)
		if r.code != 1 || r.stdout != "" {
			t.Errorf("%s: want exit 1 and no output: %+v", tc.name, r)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q: %+v", tc.name, w, r)
			}
		}
	}
	if _, err := os.Stat(newIdx); !os.IsNotExist(err) {
		t.Errorf("an index run over no captures left %s (%v)", newIdx, err)
	}
	r := runCLI(t, nil, "index", "-i", idx, p)
	if r.code != 0 || !strings.Contains(r.stderr, "nothing new for "+idx+": 1 capture already indexed") {
		t.Errorf("index again: want exit 0 and 'nothing new': %+v", r)
	}
}
