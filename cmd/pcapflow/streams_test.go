package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/internal/capgen"
)

func writeCapture(t *testing.T, name string, c *capgen.Capture) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	var b bytes.Buffer
	if err := c.WritePcap(&b, capgen.PcapOptions{Nanos: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Each policy case of the reassembly capture, through the whole command:
// the client's stream file holds what the policy says.
func TestStreamsPolicyCases(t *testing.T) {
	p := writeCapture(t, "reassembly.pcap", capgen.Reassembly())
	for _, gaps := range []string{"skip", "zero", "stop"} {
		dir := filepath.Join(t.TempDir(), "out")
		r := runCLI(t, nil, "streams", p, "-O", dir, "--gaps", gaps, "dst", "port", "80")
		if r.code != 0 {
			t.Fatalf("streams: %+v", r)
		}
		for _, c := range capgen.ReassemblyCases {
			want := c.Want
			switch {
			case gaps == "zero" && c.Zero != "":
				want = c.Zero
			case gaps == "stop" && c.Stop != "":
				want = c.Stop
			}
			matches, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("*-tcp-10.0.0.1.%d-10.0.0.2.80", c.Port)))
			if len(matches) != 1 {
				t.Errorf("%s (--gaps %s): %d stream files", c.Name, gaps, len(matches))
				continue
			}
			got, _ := os.ReadFile(matches[0])
			if string(got) != want {
				t.Errorf("%s (--gaps %s): stream %q, want %q", c.Name, gaps, got, want)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(dir, ".*.partial")); len(left) > 0 {
			t.Errorf("partial files left: %v", left)
		}
	}
	// flows reports the same counters.
	r := runCLI(t, nil, "flows", "-F", "json", p, "src", "port", "30005")
	if !strings.Contains(r.stdout, `"missing_bytes":4,`) {
		t.Errorf("flows of the gap case: %s", r.stdout)
	}
	r = runCLI(t, nil, "flows", "-F", "json", p, "src", "port", "30012")
	if !strings.Contains(r.stdout, `"missing_bytes":4,`) {
		t.Errorf("flows of the hole-before-FIN case: %s", r.stdout)
	}
	r = runCLI(t, nil, "flows", "-F", "json", p, "src", "port", "30004")
	if !strings.Contains(r.stdout, `"retrans_bytes":4,`) {
		t.Errorf("flows of the overlap case: %s", r.stdout)
	}
}

// --tcpheader frames every segment: parse the frames back.
func TestStreamsTCPHeader(t *testing.T) {
	p := writeCapture(t, "reassembly.pcap", capgen.Reassembly())
	out := filepath.Join(t.TempDir(), "all.bin")
	r := runCLI(t, nil, "streams", p, "-w", out, "--tcpheader", "dst", "port", "80")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	b, _ := os.ReadFile(out)
	streams := map[uint16][]byte{}
	// A segment's header carries the time its bytes were captured, so a
	// segment that waited for a hole may carry an earlier time.
	for len(b) > 0 {
		if len(b) < 12 {
			t.Fatalf("truncated header")
		}
		ts := binary.LittleEndian.Uint64(b)
		n := int(binary.LittleEndian.Uint16(b[8:]))
		id := binary.LittleEndian.Uint16(b[10:])
		if ts < uint64(capgen.Start) || ts > uint64(capgen.Start)+1e9 {
			t.Fatalf("timestamp %d is not the capture's", ts)
		}
		streams[id] = append(streams[id], b[12:12+n]...)
		b = b[12+n:]
	}
	var all []string
	for _, s := range streams {
		all = append(all, string(s))
	}
	for _, c := range capgen.ReassemblyCases {
		found := false
		for _, s := range all {
			found = found || s == c.Want
		}
		if !found {
			t.Errorf("%s: no framed stream %q in %q", c.Name, c.Want, all)
		}
	}
}

// Thousands of concurrent streams with few open files: every file is
// complete, and the index gives the same streams as the scan.
func TestStreamsManyFiles(t *testing.T) {
	c := capgen.New(capgen.Start)
	const n = 2000
	var conns []*capgen.TCPConn
	for i := 0; i < n; i++ {
		a := capgen.Endpoint{MAC: capgen.MAC(1), IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Port: uint16(20000 + i)}
		b := capgen.Endpoint{MAC: capgen.MAC(2), IP: netip.MustParseAddr("10.2.0.1"), Port: 80}
		conns = append(conns, c.NewTCP(a, b, uint32(i*7919), 1))
		conns[i].Handshake()
	}
	for round := 0; round < 3; round++ { // interleave the data of all streams
		for i, t := range conns {
			t.Data(true, []byte(fmt.Sprintf("conn %d round %d;", i, round)))
		}
	}
	p := writeCapture(t, "many.pcap", c)
	for _, indexed := range []bool{false, true} {
		if indexed {
			if r := runCLI(t, nil, "index", p); r.code != 0 {
				t.Fatal(r)
			}
		}
		dir := filepath.Join(t.TempDir(), "s")
		r := runCLI(t, nil, "streams", p, "-O", dir, "--max-open", "16", "dst", "port", "80")
		if r.code != 0 {
			t.Fatalf("%+v", r)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != n {
			t.Fatalf("%d files, want %d", len(ents), n)
		}
		for _, i := range []int{0, 1, n / 2, n - 1} {
			m, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("*-tcp-10.1.%d.%d.%d-*", byte(i>>8), byte(i), 20000+i)))
			got, _ := os.ReadFile(m[0])
			want := fmt.Sprintf("conn %d round 0;conn %d round 1;conn %d round 2;", i, i, i)
			if string(got) != want {
				t.Errorf("index %v stream %d: %q, want %q", indexed, i, got, want)
			}
		}
	}
}

// 100 000 streams to a directory under an open-file limit of 64: the
// default --max-open follows the limit, every stream gets its file, and
// no "too many open files" happens. Runs the binary, since the limit is
// set by the shell for that process only.
func TestStreamsHundredThousandFlows(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100 000 files; skipped with -short")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh to set the open-file limit")
	}
	const n = 100_000
	c := capgen.New(capgen.Start)
	for i := 0; i < n; i++ {
		a := capgen.Endpoint{MAC: capgen.MAC(1), IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: uint16(1024 + i%60000)}
		b := capgen.Endpoint{MAC: capgen.MAC(2), IP: netip.MustParseAddr("10.200.0.1"), Port: 80}
		c.NewTCP(a, b, uint32(i), 1).Data(true, []byte(fmt.Sprintf("stream %d", i)))
	}
	p := writeCapture(t, "100k.pcap", c)
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "s")
	cmd := exec.Command("sh", "-c", `ulimit -n 64 && exec "$0" "$@"`, bin, "streams", p, "-O", dir, "tcp")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("streams under ulimit -n 64: %v\n%s", err, out)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		t.Fatalf("%d files, want %d\n%s", len(ents), n, out)
	}
	for _, i := range []int{0, n / 3, n - 1} {
		m, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("*-tcp-10.%d.%d.%d.%d-*", byte(i>>16), byte(i>>8), byte(i), 1024+i%60000)))
		if len(m) != 1 {
			t.Fatalf("stream %d: files %v", i, m)
		}
		if got, _ := os.ReadFile(m[0]); string(got) != fmt.Sprintf("stream %d", i) {
			t.Errorf("stream %d: %q", i, got)
		}
	}
}
