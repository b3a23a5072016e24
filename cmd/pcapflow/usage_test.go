package main

import (
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
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"flows", filepath.Join(dir, "typo.pcap")}, 1, "typo.pcap: no such capture file"},
		{[]string{"flows", "typo.pcapng", "port", "80"}, 1, "typo.pcapng: no such capture file"},
		{[]string{"flows", p, "port", "8o"}, 2, "expected 'and', 'or' or the end of the filter"},
		{[]string{"extract", p, "-w", filepath.Join(dir, "none.pcap"), "flow", "999"}, 0, `warning: no flow matches "flow 999"`},
		{[]string{"streams", p, "-w", filepath.Join(dir, "none.bin"), "host", "192.0.2.99"}, 0, `warning: no flow matches "host 192.0.2.99"`},
	} {
		r := runCLI(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
		}
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
