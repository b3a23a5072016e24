package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/internal/capgen"
)

// jsonFlows reads flows -F json lines.
func jsonFlows(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("bad JSON line: %v", err)
		}
		rows = append(rows, m)
	}
	return rows
}

// The default listing is a table for people: a header, aligned
// columns, dates in UTC or --tz or TZ, addresses as a filter takes them,
// protocol names, the capture when there are several.
func TestTableListing(t *testing.T) {
	p := basicCapture(t)
	r := runCLI(t, nil, "flows", p)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 18 {
		t.Fatalf("flows: %+v", r)
	}
	hdr := lines[0]
	if !strings.HasPrefix(hdr, "ID  PROTO  SRC") || !strings.Contains(hdr, "FIRST") || strings.Contains(hdr, "CAPTURE") {
		t.Fatalf("header %q", hdr)
	}
	// Aligned: every row has the header's column starts; numbers end
	// where their header ends.
	for _, col := range []string{"SRC", "DST", "FIRST", "LAST"} {
		at := strings.Index(hdr, col)
		for _, l := range lines[1:] {
			if at > len(l) || l[at-1] != ' ' || l[at] == ' ' {
				t.Fatalf("column %s does not start at %d in %q", col, at, l)
			}
		}
	}
	for _, l := range lines[1:] {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space: %q", l)
		}
	}
	// Addresses as the filter takes them, no padding, and dates in UTC.
	if !strings.Contains(lines[1], "10.0.0.1     40000  10.0.0.2") || !strings.Contains(lines[1], "2024-05-01 10:00:00.000000 UTC") {
		t.Fatalf("row 1: %q", lines[1])
	}
	// --tz and TZ.
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--tz", "Asia/Tokyo"}, "", "2024-05-01 19:00:00.000000 JST"},
		{nil, "America/New_York", "2024-05-01 06:00:00.000000 EDT"},
		{[]string{"--tz", "UTC"}, "America/New_York", "2024-05-01 10:00:00.000000 UTC"},
	} {
		t.Setenv("TZ", tc.env)
		r := runCLI(t, nil, append([]string{"flows", p, "flow", "1"}, tc.args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("%v TZ=%q: %+v, want %s", tc.args, tc.env, r, tc.want)
		}
	}
	t.Setenv("TZ", "")
	if r := runCLI(t, nil, "flows", p, "--tz", "Mars/Olympus"); r.code != 2 || !strings.Contains(r.stderr, "--tz") {
		t.Errorf("a bad zone: %+v", r)
	}
	// Protocol names, not numbers: GRE in the tunnels capture.
	tun := writeCapture(t, "tunnels.pcap", capgen.Tunnels())
	if r := runCLI(t, nil, "flows", tun, "ip", "proto", "47"); r.code != 0 || !strings.Contains(r.stdout, "  gre  ") {
		t.Errorf("GRE flows: %+v", r)
	}
	// Several captures: a capture column.
	two := filepath.Join(filepath.Dir(p), "two.pcap")
	os.WriteFile(two, shiftPcap(t, p, 24*time.Hour), 0o644)
	r = runCLI(t, nil, "flows", p, two)
	if r.code != 0 || !strings.Contains(r.stdout, "CAPTURE") || !strings.Contains(r.stdout, "two.pcap") {
		t.Errorf("two captures: %+v", r)
	}
	// pcap_flow's line is -F seed, and what compat prints.
	r = runCLI(t, nil, "flows", p, "-F", "seed", "flow", "1")
	want := "FlowID:        1 | TCP  02:00:00:00:00:01 -> 02:00:00:00:00:02 |  10.  0.  0.  1 ->  10.  0.  0.  2 |  40000 ->     80  |                7 Pkts              457 Bytes  |  10:00:00.000.000.000 -> 10:00:00.022.002.000 : 00:00:00.022.002.000\n"
	if r.stdout != want {
		t.Errorf("-F seed:\n got %q\nwant %q", r.stdout, want)
	}
	c := runCLI(t, nil, "compat", p)
	if !strings.Contains(c.stdout, strings.TrimSuffix(want, "\n")) {
		t.Errorf("compat does not print the seed line:\n%s", c.stdout)
	}
}

// shiftPcap returns a classic pcap with every timestamp moved by d.
func shiftPcap(t *testing.T, path string, d time.Duration) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = slices.Clone(b)
	nanos := b[0] == 0x4d // a3 b2 3c 4d: ns resolution, little-endian
	for off := 24; off+16 <= len(b); {
		sec := uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16 | uint32(b[off+3])<<24
		sec += uint32(d / time.Second)
		b[off], b[off+1], b[off+2], b[off+3] = byte(sec), byte(sec>>8), byte(sec>>16), byte(sec>>24)
		incl := int(b[off+8]) | int(b[off+9])<<8 | int(b[off+10])<<16 | int(b[off+11])<<24
		off += 16 + incl
	}
	_ = nanos
	return b
}

// --sort takes every key, --reverse and --offset/--limit apply after it,
// in scan and index mode alike; JSON and CSV carry duration.
func TestSortOrders(t *testing.T) {
	p := basicCapture(t)
	all := jsonFlows(t, runCLI(t, nil, "flows", "--scan", p, "-F", "json").stdout)
	if len(all) != 17 {
		t.Fatalf("%d flows", len(all))
	}
	// Every key as an exact integer: times and durations in ns.
	num := func(m map[string]any, k string) int64 {
		switch v := m[k].(type) {
		case json.Number:
			if sec, frac, ok := strings.Cut(v.String(), "."); ok {
				s, _ := strconv.ParseInt(sec, 10, 64)
				f, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
				return s*1e9 + f
			}
			n, _ := v.Int64()
			return n
		case string:
			ts, _ := time.Parse(time.RFC3339Nano, v)
			return ts.UnixNano()
		}
		t.Fatalf("field %s: %v", k, m[k])
		return 0
	}
	for _, m := range all {
		first, last := num(m, "first"), num(m, "last")
		if d := num(m, "duration"); d != last-first {
			t.Fatalf("flow %v: duration %v ns, last-first %v ns", m["id"], d, last-first)
		}
	}
	runCLI(t, nil, "index", p)
	for _, key := range []string{"id", "first", "last", "packets", "bytes", "duration"} {
		field := map[string]string{"id": "id", "first": "first", "last": "last", "packets": "packets", "bytes": "bytes", "duration": "duration"}[key]
		for _, rev := range []bool{false, true} {
			want := slices.Clone(all)
			sort.SliceStable(want, func(i, j int) bool {
				a, b := num(want[i], field), num(want[j], field)
				if a == b {
					a, b = num(want[i], "id"), num(want[j], "id")
				}
				if rev {
					return a > b
				}
				return a < b
			})
			want = want[3:8]
			args := []string{"-F", "json", "--sort", key, "--offset", "3", "--limit", "5"}
			if rev {
				args = append(args, "--reverse")
			}
			for _, mode := range [][]string{{"--scan", p}, {p}} {
				got := jsonFlows(t, runCLI(t, nil, append(append([]string{"flows"}, mode...), args...)...).stdout)
				var g, w []string
				for i := range got {
					g = append(g, fmt.Sprint(got[i]["id"]))
				}
				for i := range want {
					w = append(w, fmt.Sprint(want[i]["id"]))
				}
				if !slices.Equal(g, w) {
					t.Errorf("%v %v: ids %v, want %v", mode, args, g, w)
				}
			}
		}
	}
	if r := runCLI(t, nil, "flows", p, "--sort", "size"); r.code != 2 || !strings.Contains(r.stderr, "duration") {
		t.Errorf("bad sort key: %+v", r)
	}
	// CSV has the column too.
	r := runCLI(t, nil, "flows", p, "-F", "csv", "flow", "1")
	if !strings.Contains(strings.SplitN(r.stdout, "\n", 2)[0], ",duration,") {
		t.Errorf("CSV header: %q", r.stdout)
	}
}

// --bidir rows carry the VLAN stack and tunnel context, and sort and
// limit apply to them: two conversations that differ only in VLAN are
// two rows that say so.
func TestBidirContextAndOrder(t *testing.T) {
	c := capgen.New(capgen.Start)
	a := netip.MustParseAddr("10.1.0.1")
	b := netip.MustParseAddr("10.1.0.2")
	for i, vlan := range []uint16{10, 20} {
		conn := c.NewTCP(capgen.Endpoint{MAC: capgen.MAC(1), IP: a, Port: 5000}, capgen.Endpoint{MAC: capgen.MAC(2), IP: b, Port: 80}, uint32(100*i), 7)
		conn.VLANs = []uint16{vlan}
		conn.Handshake()
		for j := 0; j <= i*3; j++ {
			conn.Data(true, []byte("more data"))
		}
	}
	p := writeCapture(t, "vlans.pcap", c)
	r := runCLI(t, nil, "flows", p, "--bidir")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasSuffix(lines[1], "vlan 10") || !strings.HasSuffix(lines[2], "vlan 20") {
		t.Fatalf("--bidir table: %+v", r)
	}
	r = runCLI(t, nil, "flows", p, "--bidir", "-F", "json", "--sort", "packets", "--reverse", "--limit", "1")
	rows := jsonFlows(t, r.stdout)
	if len(rows) != 1 || fmt.Sprint(rows[0]["vlan"]) != "[20]" {
		t.Fatalf("--bidir --sort packets --reverse --limit 1: %+v", r)
	}
	r = runCLI(t, nil, "flows", p, "--bidir", "-F", "csv")
	if !strings.Contains(r.stdout, ",vlan,tunnel,") || !strings.Contains(r.stdout, ",10,,") {
		t.Errorf("--bidir CSV: %s", r.stdout)
	}
}

// count -F json is one object; version prints the build.
func TestCountJSONAndVersion(t *testing.T) {
	p := basicCapture(t)
	r := runCLI(t, nil, "count", p, "-F", "json", "tcp")
	var c struct{ Flows, Packets, Bytes int }
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || c.Flows != 10 || c.Packets == 0 || c.Bytes == 0 {
		t.Fatalf("count -F json: %+v (%v)", r, err)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "pcapflow ") || !strings.Contains(r.stdout, "revision ") || !strings.Contains(r.stdout, "go1.") {
			t.Errorf("%v: %+v", args, r)
		}
	}
}

// Every gap is named on stderr with its flow, offset and size, up to
// --max-gaps, and the summary counts them all.
func TestStreamsNameGaps(t *testing.T) {
	p := writeCapture(t, "reassembly.pcap", capgen.Reassembly())
	out := filepath.Join(t.TempDir(), "s")
	r := runCLI(t, nil, "streams", p, "-w", out, "port", "30005")
	if r.code != 0 || !strings.Contains(r.stderr, "pcapflow: gap: flow ") || !strings.Contains(r.stderr, ": 4 bytes missing at stream offset 5\n") {
		t.Fatalf("a gap of the policy case: %+v", r)
	}
	r = runCLI(t, nil, "streams", p, "-w", out, "--force", "--max-gaps", "0")
	if r.code != 0 || strings.Contains(r.stderr, "missing at stream offset") || !strings.Contains(r.stderr, "more gaps not named") {
		t.Fatalf("--max-gaps 0: %+v", r)
	}
}

// --from/--to trim the selected flows' packets to a time window, as
// editcap -A/-B does, in extract and streams.
func TestTimeWindow(t *testing.T) {
	p := basicCapture(t)
	all := filepath.Join(t.TempDir(), "all.pcap")
	runCLI(t, nil, "extract", p, "-w", all, "tcp")
	times := recordTimes(t, all)
	from, to := times[3], times[10]
	want := 0
	for _, ts := range times {
		if !ts.Before(from) && ts.Before(to) {
			want++
		}
	}
	for _, f := range []string{from.Format(time.RFC3339Nano), fmt.Sprintf("%d.%09d", from.Unix(), from.Nanosecond())} {
		out := filepath.Join(t.TempDir(), "w.pcap")
		r := runCLI(t, nil, "extract", p, "-w", out, "--from", f, "--to", to.Format(time.RFC3339Nano), "tcp")
		if r.code != 0 {
			t.Fatalf("extract --from %s: %+v", f, r)
		}
		if got := len(recordTimes(t, out)); got != want {
			t.Errorf("--from %s: %d packets, want %d", f, got, want)
		}
	}
	if r := runCLI(t, nil, "extract", p, "-w", "-", "--from", "yesterday"); r.code != 2 || !strings.Contains(r.stderr, "--from") {
		t.Errorf("a bad time: %+v", r)
	}
	if r := runCLI(t, nil, "extract", p, "-w", "-", "--from", to.Format(time.RFC3339Nano), "--to", from.Format(time.RFC3339Nano)); r.code != 2 {
		t.Errorf("an empty window: %+v", r)
	}
	// streams: the window after the request leaves only the response.
	r := runCLI(t, nil, "streams", p, "-w", "-", "--from", times[6].Format(time.RFC3339Nano), "flow", "1")
	if r.code != 0 || strings.Contains(r.stdout, "GET") {
		t.Errorf("streams --from: %+v", r)
	}
}

func recordTimes(t *testing.T, path string) []time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	nanos := b[0] == 0x4d
	for off := 24; off+16 <= len(b); {
		le := func(i int) int64 { return int64(b[i]) | int64(b[i+1])<<8 | int64(b[i+2])<<16 | int64(b[i+3])<<24 }
		sec, sub := le(off), le(off+4)
		if !nanos {
			sub *= 1000
		}
		out = append(out, time.Unix(sec, sub).UTC())
		off += 16 + int(le(off+8))
	}
	return out
}

// follow prints both directions, each byte readable back exactly from
// the text and from the hexdump: what the reassembler gives each flow.
func TestFollow(t *testing.T) {
	p := basicCapture(t)
	stream := func(id string) string {
		r := runCLI(t, nil, "streams", p, "-w", "-", "flow", id)
		if r.code != 0 {
			t.Fatal(r)
		}
		return r.stdout
	}
	wantA, wantB := stream("1"), stream("2")
	r := runCLI(t, nil, "follow", p, "flow", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "A (>): 10.0.0.1:40000") {
		t.Fatalf("follow: %+v", r)
	}
	gotA, gotB := unfollow(t, r.stdout)
	if gotA != wantA || gotB != wantB {
		t.Fatalf("follow text:\nA %q\nwant %q\nB %q\nwant %q", gotA, wantA, gotB, wantB)
	}
	r = runCLI(t, nil, "follow", p, "--hex", "flow", "2")
	gotA, gotB = unhex(t, r.stdout)
	if gotA != wantA || gotB != wantB {
		t.Fatalf("follow --hex:\nA %q\nB %q", gotA, gotB)
	}
	// Several conversations: the first, said on stderr; --all for all.
	r = runCLI(t, nil, "follow", p, "tcp")
	if r.code != 0 || !strings.Contains(r.stderr, "conversations match") || strings.Count(r.stdout, "Follow: ") != 1 {
		t.Errorf("several: %+v", r)
	}
	r = runCLI(t, nil, "follow", p, "--all", "tcp")
	if r.code != 0 || strings.Count(r.stdout, "Follow: ") != 5 {
		t.Errorf("--all: %d conversations", strings.Count(r.stdout, "Follow: "))
	}
	if r := runCLI(t, nil, "follow", p, "icmp"); r.code != 1 || !strings.Contains(r.stderr, "no TCP or UDP conversation") {
		t.Errorf("nothing to follow: %+v", r)
	}
	// A gap is a line of its own.
	g := writeCapture(t, "reassembly.pcap", capgen.Reassembly())
	r = runCLI(t, nil, "follow", g, "port", "30005")
	if !strings.Contains(r.stdout, "> [4 bytes missing]\n") {
		t.Errorf("follow of a gap: %s", r.stdout)
	}
}

// sideOf is the buffer of the side a line of follow's output shows:
// a ("> ", the client's) or b ("< "); nil for any other line.
func sideOf(l string, a, b *bytes.Buffer) *bytes.Buffer {
	switch {
	case strings.HasPrefix(l, "> "):
		return a
	case strings.HasPrefix(l, "< "):
		return b
	}
	return nil
}

// unfollow reads follow's text back into each side's bytes.
func unfollow(t *testing.T, out string) (a, b string) {
	var sa, sb bytes.Buffer
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		dst := sideOf(l, &sa, &sb)
		if dst == nil {
			continue
		}
		l = l[2:]
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "bytes missing]") {
			continue
		}
		cont := false
		var x []byte
		for i := 0; i < len(l); i++ {
			switch {
			case l[i] == '\\' && i+1 < len(l) && l[i+1] == '\\':
				x = append(x, '\\')
				i++
			case l[i] == '\\' && i+1 < len(l) && l[i+1] == 'x':
				v, _ := strconv.ParseUint(l[i+2:i+4], 16, 8)
				x = append(x, byte(v))
				i += 3
			case l[i] == '\\' && i == len(l)-1:
				cont = true
			default:
				x = append(x, l[i])
			}
		}
		dst.Write(x)
		if !cont {
			dst.WriteByte('\n')
		}
	}
	return sa.String(), sb.String()
}

func unhex(t *testing.T, out string) (a, b string) {
	var sa, sb bytes.Buffer
	for _, l := range strings.Split(out, "\n") {
		dst := sideOf(l, &sa, &sb)
		if dst == nil {
			continue
		}
		hexpart := l[2+10 : strings.Index(l, " |")]
		for _, h := range strings.Fields(hexpart) {
			v, err := strconv.ParseUint(h, 16, 8)
			if err != nil {
				t.Fatalf("hexdump line %q", l)
			}
			dst.WriteByte(byte(v))
		}
	}
	return sa.String(), sb.String()
}
