package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An output that is an input (the capture itself, a hard link or a
// symbolic link to it) or lies inside an index is refused, with or
// without --force, and the capture and index are untouched.
func TestOutputIsNeverAnInput(t *testing.T) {
	p := basicCapture(t)
	dir := filepath.Dir(p)
	hard := filepath.Join(dir, "hard.pcap")
	sym := filepath.Join(dir, "sym.pcap")
	if err := os.Link(p, hard); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p, sym); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, nil, "index", p); r.code != 0 {
		t.Fatal(r)
	}
	idx := p + ".pfidx"
	before, _ := os.ReadFile(p)
	want := runCLI(t, nil, "flows", "-F", "json", "-i", idx).stdout
	for _, args := range [][]string{
		{"extract", p, "-w", p},
		{"extract", p, "-w", p, "--force"},
		{"extract", p, "-w", hard, "--force"},
		{"extract", p, "-w", sym, "--force"},
		{"extract", "--scan", p, "-w", hard, "--force"},
		{"extract", "-i", idx, "-w", filepath.Join(idx, "x.pcap")},
		{"streams", p, "-w", p, "--force"},
		{"streams", p, "-O", filepath.Join(idx, "s")},
		{"streams", p, "-O", idx, "--force"},
		{"compat", p, "--extract-port", "0", "65535", "-o", p},
		{"compat", p, "--extract", "1", "-o", hard},
	} {
		r := runCLI(t, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "refusing to write") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Fatal("the capture changed")
	}
	if got := runCLI(t, nil, "flows", "-F", "json", "-i", idx); got.stdout != want {
		t.Fatalf("the index answers differently: %+v", got)
	}
}
