package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/pcapio"
)

// result is what one pcapflow run printed.
type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: bytes.NewReader(stdin), stdout: &out, stderr: &errb}
	code := run(context.Background(), e, append([]string{"pcapflow"}, args...))
	return result{code, out.String(), errb.String()}
}

// basicCapture writes the quick-start capture into a fresh directory.
func basicCapture(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "basic.pcap")
	if err := os.WriteFile(p, capgen.Files()[0].Make(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cutCapture is basicCapture cut two thirds in, mid-record, as a capture
// still being written is; whole is all of it, to grow it with.
func cutCapture(t *testing.T) (path string, whole []byte) {
	t.Helper()
	path = basicCapture(t)
	whole, _ = os.ReadFile(path)
	if err := os.WriteFile(path, whole[:len(whole)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	return path, whole
}

func countRecords(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapio.NewReader(f, path)
	if err != nil {
		t.Fatal(err)
	}
	var rec pcapio.Record
	n := 0
	for r.Next(&rec) == nil {
		n++
	}
	return n
}

// tsharkCount opens a file in tshark and counts its packets; it skips
// when tshark is not installed.
func tsharkCount(t *testing.T, path string) int {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (.ci/run installs it)")
	}
	out, err := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark cannot read %s: %v", path, err)
	}
	return strings.Count(string(out), "\n")
}

func TestQuickStart(t *testing.T) {
	p := basicCapture(t)
	if r := runCLI(t, nil, "index", p); r.code != 0 {
		t.Fatalf("index: %+v", r)
	}
	if _, err := os.Stat(p + ".pfidx"); err != nil {
		t.Fatal("no index beside the capture")
	}
	r := runCLI(t, nil, "flows", p)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 18 || !strings.HasPrefix(r.stdout, "ID  PROTO  SRC") ||
		!strings.Contains(r.stdout, "\n 1  tcp    10.0.0.1     40000  10.0.0.2        80        7    457  2024-05-01 10:00:00.000000 UTC") {
		t.Fatalf("flows: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "flow1.pcap")
	r = runCLI(t, nil, "extract", p, "-w", out, "flow", "1")
	if r.code != 0 {
		t.Fatalf("extract: %+v", r)
	}
	if n := countRecords(t, out); n != 7 {
		t.Errorf("extracted %d records, flow 1 has 7", n)
	}
	if n := tsharkCount(t, out); n != 7 {
		t.Errorf("tshark reads %d packets, want 7", n)
	}
	// An existing output is kept unless --force.
	if r := runCLI(t, nil, "extract", p, "-w", out, "flow", "2"); r.code != 2 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("overwrite without --force: %+v", r)
	}
	if r := runCLI(t, nil, "extract", p, "-w", out, "--force", "flow", "2"); r.code != 0 || countRecords(t, out) != 6 {
		t.Errorf("overwrite with --force: %+v", r)
	}
}

// The same capture twice gives byte-identical JSON, from a scan and from
// the index.
func TestFlowIDsStable(t *testing.T) {
	p := basicCapture(t)
	a := runCLI(t, nil, "flows", "-F", "json", p)
	b := runCLI(t, nil, "flows", "-F", "json", p)
	if a.code != 0 || a.stdout != b.stdout {
		t.Fatal("two scans differ")
	}
	runCLI(t, nil, "index", p)
	c := runCLI(t, nil, "flows", "-F", "json", p)
	if c.stdout != a.stdout {
		t.Fatalf("index and scan differ:\n%s\n%s", c.stdout, a.stdout)
	}
	for i, line := range strings.Split(strings.TrimSpace(a.stdout), "\n") {
		if !strings.HasPrefix(line, `{"id":`+strconv.Itoa(i+1)+`,`) {
			t.Fatalf("line %d is not flow %d: %s", i+1, i+1, line)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	p := basicCapture(t)
	r := runCLI(t, nil, "flows", p, "host", "10.0.0.1", "and", "port")
	if r.code != 2 || !strings.Contains(r.stderr, "expected a port number") || !strings.Contains(r.stderr, "\n                        ^") {
		t.Errorf("bad filter: %+v", r)
	}
	r = runCLI(t, nil, "count", p, "proto", "and", "port", "1")
	if r.code != 2 || !strings.Contains(r.stderr, `found "and"`) {
		t.Errorf("reserved word: %+v", r)
	}
}

func TestCountAndFormats(t *testing.T) {
	p := basicCapture(t)
	r := runCLI(t, nil, "count", p, "tcp", "and", "port", "25")
	if r.stdout != "flows 4 packets 16 bytes 1008\n" {
		t.Errorf("count: %q", r.stdout)
	}
	r = runCLI(t, nil, "flows", "-F", "csv", p, "udp")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "id,peer,proto,src,dst") {
		t.Errorf("csv: %q", r.stdout)
	}
	r = runCLI(t, nil, "flows", "--bidir", "-F", "json", p, "port", "25")
	if strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, `"flows":[14,15]`) {
		t.Errorf("bidir: %q", r.stdout)
	}
	r = runCLI(t, nil, "flows", "-F", "json", "--sort", "bytes", "--reverse", "--limit", "1", p)
	if !strings.HasPrefix(r.stdout, `{"id":2,`) {
		t.Errorf("sort: %q", r.stdout)
	}
}

func TestStdinCompressed(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(capgen.Files()[0].Make())
	w.Close()
	r := runCLI(t, gz.Bytes(), "flows", "-F", "json", "-")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 17 || !strings.Contains(r.stdout, `"capture":"-"`) {
		t.Fatalf("stdin: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "o.pcap")
	r = runCLI(t, gz.Bytes(), "extract", "-", "-w", out, "port", "80")
	if r.code != 0 || countRecords(t, out) != 13 {
		t.Fatalf("extract from stdin: %+v", r)
	}
}

// Every malformed corpus file gives its documented exit status and a
// message naming the file and offset; no panic.
func TestMalformedCorpusFiles(t *testing.T) {
	dir := corpus.Dir(t)
	for _, e := range corpus.Manifest(t) {
		if !e.Has("malformed") && !e.Has("empty") && !e.Has("unsupported-linktype") {
			continue
		}
		t.Run(e.File, func(t *testing.T) {
			p := filepath.Join(dir, e.File)
			r := runCLI(t, nil, "flows", p)
			truncated := e.Has("truncated-file")
			switch {
			case e.Has("empty"):
				if r.code != 0 || r.stdout != "" {
					t.Errorf("empty capture: %+v", r)
				}
			case e.Has("unsupported-linktype"):
				if r.code != 0 || !strings.Contains(r.stderr, "unsupported link type") {
					t.Errorf("unsupported link type: %+v", r)
				}
			case truncated:
				if r.code != 0 || !strings.Contains(r.stderr, "warning: "+p+": offset ") {
					t.Errorf("truncated: want a warning with offset and exit 0: %+v", r)
				}
			default:
				if r.code != 1 || !strings.Contains(r.stderr, p+": offset ") {
					t.Errorf("want exit 1 and the file and offset: %+v", r)
				}
			}
			if e.Packets > 0 && e.Has("malformed") && r.stdout == "" {
				t.Errorf("records before the damage are not listed")
			}
		})
	}
}
