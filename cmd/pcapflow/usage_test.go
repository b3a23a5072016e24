package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Mistakes people make at the command line get an answer about the
// mistake: a mistyped capture path is a missing file, not a filter
// syntax error; a selection of nothing still writes its (empty) output
// but says that nothing matched.
func TestCommandLineMistakes(t *testing.T) {
	p := basicCapture(t)
	dir := t.TempDir()
	empty := t.TempDir()
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"flows", filepath.Join(dir, "typo.pcap")}, 1, "typo.pcap: no such capture file"},
		{[]string{"flows", "typo.pcapng", "port", "80"}, 1, "typo.pcapng: no such capture file"},
		{[]string{"flows", p, "port", "8o"}, 2, "expected 'and', 'or' or the end of the filter"},
		{[]string{"flows", p, "-F", "xml"}, 2, `-F: unknown format "xml"`},
		{[]string{"flows", p, "--bidir", "-F", "xml"}, 2, `-F: unknown format "xml"`},
		{[]string{"extract", p, "-w", filepath.Join(dir, "none.pcap"), "flow", "999"}, 0, `warning: no flow matches "flow 999"`},
		{[]string{"streams", p, "-w", filepath.Join(dir, "none.bin"), "host", "192.0.2.99"}, 0, `warning: no flow matches "host 192.0.2.99"`},
		// Messages that once misled: an empty directory is no index (not
		// one that was killed), a file is no index directory (not a lock
		// file error), a missing capture is named as a capture.
		{[]string{"count", "-i", empty}, 2, "the directory is empty, not an index"},
		{[]string{"count", "-i", p}, 2, "that is a file, not an index directory"},
		{[]string{"index", filepath.Join(dir, "nonexistent")}, 1, "capture " + filepath.Join(dir, "nonexistent")},
	} {
		r := runCLI(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
		}
	}
}

// Standard input cannot be indexed (its packets could not be read again):
// refused before anything is created, so no "-.pfidx" is left to answer
// "incomplete" later.
func TestIndexStdinRefused(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	data, err := os.ReadFile(basicCapture(t))
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, data, "index", "-")
	if r.code != 2 || !strings.Contains(r.stderr, "standard input cannot be indexed") {
		t.Errorf("index -: %+v", r)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("index - left %d entries behind, first %s", len(left), left[0].Name())
	}
}

// Frames that belong to no flow (the basic capture has one ARP frame) are
// counted in the index summary, not dropped without a word.
func TestIndexSummaryCountsFramesInNoFlow(t *testing.T) {
	p := basicCapture(t)
	r := runCLI(t, nil, "index", p)
	if r.code != 0 || !strings.Contains(r.stderr, "57 packets") || !strings.Contains(r.stderr, "1 packet in no flow (not IP)") {
		t.Errorf("%+v", r)
	}
}
