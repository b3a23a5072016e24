package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

func TestCompatDisplay(t *testing.T) {
	p := basicCapture(t)
	r := runCLI(t, nil, "compat", p)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || !strings.Contains(lines[0], "] FileSize: ") || len(lines) != 18 {
		t.Fatalf("plain compat: %+v", r)
	}
	// Ascending packet count, then flow ID; the first column is the rank.
	var last uint64
	for i, l := range lines[1:] {
		if !strings.HasPrefix(l, strings.Repeat(" ", 5-len(itoa(i)))+itoa(i)+" FlowID:") {
			t.Errorf("line %d: %q", i, l)
		}
		n := field(l, "Pkts")
		if n < last {
			t.Errorf("line %d: %d packets after %d", i, n, last)
		}
		last = n
	}
	// --flow-packet-min takes its value (the capture is still read) and
	// ranks count the hidden flows.
	r = runCLI(t, nil, "compat", "--flow-packet-min", "5", p)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 1+6 || !strings.HasPrefix(lines[1], "   11 FlowID:") {
		t.Errorf("--flow-packet-min: %+v", r)
	}
	if r := runCLI(t, nil, "compat", "--disable-display", p); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("--disable-display: %q", r.stdout)
	}
	// The binary installed as pcap_flow speaks compat.
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb}, []string{"/usr/bin/pcap_flows", "--disable-display", p})
	if code != 0 || !strings.Contains(out.String(), "FileSize") {
		t.Errorf("as pcap_flows: %d %q %q", code, out.String(), errb.String())
	}
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(binary.AppendUvarint(nil, 0)[:0]) + fmtInt(i))
}

func fmtInt(i int) string {
	s := ""
	for {
		s = string(rune('0'+i%10)) + s
		i /= 10
		if i == 0 {
			return s
		}
	}
}

// field reads the number before a word on a display line.
func field(line, word string) uint64 {
	f := strings.Fields(line[:strings.Index(line, word)])
	var n uint64
	for _, c := range f[len(f)-1] {
		n = n*10 + uint64(c-'0')
	}
	return n
}

func TestCompatExtract(t *testing.T) {
	p := basicCapture(t)
	dir := t.TempDir()
	cases := []struct {
		args []string
		want int // packets
	}{
		{[]string{"--extract", "12"}, 3},                          // N >= 8 works
		{[]string{"--extract", "2"}, 6},                           // flow 2
		{[]string{"--extract-ip", "10.0.0.9/255.255.255.255"}, 2}, // ping
		{[]string{"--extract-ip", "10.0.0.0/24"}, 45},             // CIDR: every IPv4 packet but the ARP
		{[]string{"--extract-ip", "10.0.0.77/255.255.255.0"}, 45}, // a host inside the net
		{[]string{"--extract-port", "80", "80"}, 13},
		{[]string{"--extract-port", "5000", "9999"}, 2 + 8 + 1 + 3 + 2}, // DNS 5353, VLAN 8080, UDP 6000, fragments 9000 and 9100
	}
	for _, c := range cases {
		out := filepath.Join(dir, "o.pcap")
		args := append(append([]string{"compat"}, c.args...), "-o", out, "--disable-display", p)
		r := runCLI(t, nil, args...)
		if r.code != 0 {
			t.Errorf("%v: %+v", c.args, r)
			continue
		}
		if n := countRecords(t, out); n != c.want {
			t.Errorf("%v: %d packets, want %d", c.args, n, c.want)
		}
	}
	// Without -o: pcap_flow's --output-tcp path.
	out := filepath.Join(dir, "via-output-tcp.pcap")
	if r := runCLI(t, nil, "compat", "--extract", "1", "--output-tcp", out, "--disable-display", p); r.code != 0 || countRecords(t, out) != 7 {
		t.Errorf("--extract with --output-tcp: %+v", r)
	}
}

func TestCompatStreams(t *testing.T) {
	p := basicCapture(t)
	body := string(capgen.Text("http-response", 3000))
	// --extract-tcp N to -o.
	out := filepath.Join(t.TempDir(), "s")
	if r := runCLI(t, nil, "compat", "--extract-tcp", "2", "-o", out, "--disable-display", p); r.code != 0 {
		t.Fatal(r)
	}
	if got, _ := os.ReadFile(out); !strings.HasSuffix(string(got), body) || !strings.HasPrefix(string(got), "HTTP/1.1 200 OK") {
		t.Errorf("--extract-tcp 2: %q...", string(got)[:min(40, len(got))])
	}
	// --extract-tcp-port: pcap_flow's file names, padded fields and all.
	dir := t.TempDir()
	if r := runCLI(t, nil, "compat", "--extract-tcp-port", "80", "80", "--output_tcp", dir+"/", "--disable-display", p); r.code != 0 {
		t.Fatal(r)
	}
	name := filepath.Join(dir, "tcp_02:00:00:00:00:02->02:00:00:00:00:01_ 10.  0.  0.  2-> 10.  0.  0.  1_    80-> 40000")
	if got, err := os.ReadFile(name); err != nil || !strings.HasSuffix(string(got), body) {
		t.Errorf("named stream: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d files, want 2", len(ents))
	}
	// pcap_flow's README: -o is the file prefix of --extract-tcp-port,
	// never files in the working directory.
	readme := t.TempDir()
	wd, _ := os.Getwd()
	os.Chdir(readme)
	os.Mkdir("tmp", 0o755)
	r := runCLI(t, nil, "compat", p, "--extract-tcp-port", "80", "80", "-o", "./tmp/port80_", "--disable-display")
	os.Chdir(wd)
	inTmp, _ := filepath.Glob(filepath.Join(readme, "tmp", "port80__*"))
	top, _ := os.ReadDir(readme)
	if r.code != 0 || len(inTmp) != 2 || len(top) != 1 {
		t.Errorf("-o ./tmp/port80_: %+v: %d files in tmp, %d entries in the directory", r, len(inTmp), len(top))
	}
	// A prefix that is not a directory, and re-running replaces files
	// (pcap_flow appended to them).
	pre := filepath.Join(t.TempDir(), "cap")
	for i := 0; i < 2; i++ {
		if r := runCLI(t, nil, "compat", "--extract-tcp-all", "--output-tcp", pre, "--disable-display", p); r.code != 0 {
			t.Fatal(r)
		}
	}
	m, _ := filepath.Glob(pre + "_*")
	c1, _ := filepath.Glob(pre + "_*_c1")
	if len(m) != 10 || len(c1) != 2 { // TCP directions that carry data; the reused 4-tuple gets _c1
		t.Errorf("--extract-tcp-all: %d files: %v", len(m), m)
	}
	for _, f := range m {
		if strings.Contains(f, "->    80") {
			if got, _ := os.ReadFile(f); !strings.HasPrefix(string(got), "GET /") || strings.Count(string(got), "GET") != 1 {
				t.Errorf("%s: %q", f, got)
			}
		}
	}
	// --disable-tcp-port leaves flows out.
	dir = t.TempDir()
	runCLI(t, nil, "compat", "--extract-tcp-all", "--disable-tcp-port", "25", "25", "--output_tcp", dir, "--disable-display", p)
	if ents, _ := os.ReadDir(dir); len(ents) != 6 {
		t.Errorf("--disable-tcp-port: %d files, want 6", len(ents))
	}
	// UDP: the datagrams' payloads, nothing after them.
	dir = t.TempDir()
	runCLI(t, nil, "compat", "--extract-udp-all", "--output_udp", dir, "--disable-display", p)
	frag := filepath.Join(dir, "udp_02:00:00:00:00:01->02:00:00:00:00:02_ 10.  0.  0.  1-> 10.  0.  0.  2_  9000->  9001")
	if got, _ := os.ReadFile(frag); string(got) != string(capgen.Text("fragmented-udp", 2500)) {
		t.Errorf("UDP payload file: %d bytes", len(got))
	}
	// --tcpheader: 12-byte records.
	out = filepath.Join(t.TempDir(), "h")
	runCLI(t, nil, "compat", "--extract-tcp", "1", "--tcpheader", "-o", out, "--disable-display", p)
	got, _ := os.ReadFile(out)
	if len(got) != 12+43 || binary.LittleEndian.Uint16(got[8:]) != 43 || binary.LittleEndian.Uint16(got[10:]) != 1 {
		t.Errorf("--tcpheader: %x", got[:min(16, len(got))])
	}
	// --flow-size-min: no file for small streams.
	dir = t.TempDir()
	runCLI(t, nil, "compat", "--extract-tcp-all", "--flow-size-min", "128", "--output_tcp", dir, "--disable-display", p)
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Errorf("--flow-size-min 128: %d files, want 4", len(ents))
	}
}

func TestCompatStdinAndLimits(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(capgen.Files()[0].Make())
	w.Close()
	r := runCLI(t, gz.Bytes(), "compat", "--stdin")
	if r.code != 0 || strings.Count(r.stdout, "FlowID:") != 17 || !strings.Contains(r.stdout, "[                         stdin]") {
		t.Errorf("--stdin: %+v", r)
	}
	p := basicCapture(t)
	r = runCLI(t, nil, "compat", "--packet-max", "10", p)
	if strings.Count(r.stdout, "FlowID:") != 2 { // the first 10 packets: one HTTP connection
		t.Errorf("--packet-max 10: %s", r.stdout)
	}
	r = runCLI(t, nil, "compat", "--flow-max", "2", "--flow-5tuple", "--vlan", "--disable-timezone", p)
	if r.code != 0 || strings.Count(r.stdout, "FlowID:") != 17 {
		t.Errorf("accepted options: %+v", r)
	}
	if r := runCLI(t, nil, "compat", "--no-such-option", p); r.code != 2 {
		t.Errorf("unknown option: exit %d", r.code)
	}
	if r := runCLI(t, nil, "compat", filepath.Join(t.TempDir(), "missing.pcap")); r.code != 1 {
		t.Errorf("missing capture: exit %d", r.code)
	}
	if r := runCLI(t, nil, "compat", "--extract", "1", p); r.code != 2 || !strings.Contains(r.stderr, "-o FILE") {
		t.Errorf("--extract without output: %+v", r)
	}
}
