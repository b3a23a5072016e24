package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/internal/capgen"
)

// timeoutCapture has a connection that pauses for 15 minutes and goes
// on, and one that closes and gets a stray ACK 3 s and then 30 s later.
func timeoutCapture() *capgen.Capture {
	c := capgen.New(capgen.Start)
	srv := capgen.Endpoint{MAC: capgen.MAC(2), IP: netip.MustParseAddr("192.0.2.1"), Port: 80}
	quiet := c.NewTCP(capgen.Endpoint{MAC: capgen.MAC(1), IP: netip.MustParseAddr("10.0.0.1"), Port: 40000}, srv, 100, 200)
	quiet.Handshake()
	quiet.Data(true, []byte("GET / HTTP/1.1\r\n\r\n"))
	closed := c.NewTCP(capgen.Endpoint{MAC: capgen.MAC(1), IP: netip.MustParseAddr("10.0.0.2"), Port: 40001}, srv, 300, 400)
	closed.Handshake()
	closed.Data(true, []byte("x"))
	closed.Close()
	c.Clock += int64(3 * time.Second)
	closed.Ack(true) // within the close timeout: the same flow
	c.Clock += int64(30 * time.Second)
	closed.Ack(true) // after it: a new flow
	c.Clock += int64(15 * time.Minute)
	quiet.Data(true, []byte("GET /again HTTP/1.1\r\n\r\n"))
	quiet.Data(false, []byte("HTTP/1.1 200 OK\r\n\r\n"))
	return c
}

// The timeouts are a deliberate difference from a table that never
// forgets (docs/design.md, "Flows end"): by default a connection silent
// for more than 10 minutes, or a closed one silent for more than 5 s,
// ends, and a later packet starts new flows; --idle-timeout 0 keeps
// everything one flow, --close-timeout moves the second limit. Index
// and scan agree, and an index refuses to grow with another setting.
func TestTimeouts(t *testing.T) {
	p := writeCapture(t, "timeouts.pcap", timeoutCapture())
	for _, tc := range []struct {
		args  []string
		flows int
		ids   map[string]string // sport -> ID:packets of the flows its packets are in
	}{
		// quiet: flows 1, 2, then 6, 7 after its pause; closed: 3, 4
		// with the ACK 3 s after the close, then 5 for the one 30 s after.
		{nil, 7, map[string]string{"40000": "1:3 2:1 6:1 7:1", "40001": "3:6 4:2 5:1"}},
		{[]string{"--idle-timeout", "0"}, 4, map[string]string{"40000": "1:4 2:2", "40001": "3:7 4:2"}},
		{[]string{"--idle-timeout", "20m"}, 5, map[string]string{"40000": "1:4 2:2", "40001": "3:6 4:2 5:1"}},
		// Both stray ACKs after the close timeout: the first starts flow
		// 5, which the second (an idle flow's packet) joins.
		{[]string{"--close-timeout", "2s"}, 7, map[string]string{"40000": "1:3 2:1 6:1 7:1", "40001": "3:5 4:2 5:2"}},
		// Both within it.
		{[]string{"--close-timeout", "1m"}, 6, map[string]string{"40000": "1:3 2:1 5:1 6:1", "40001": "3:7 4:2"}},
		// The idle timeout bounds the close timeout.
		{[]string{"--close-timeout", "1h", "--idle-timeout", "2s"}, 8, map[string]string{"40000": "1:3 2:1 7:1 8:1", "40001": "3:5 4:2 5:1 6:1"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			idx := filepath.Join(t.TempDir(), "x.pfidx")
			if r := runCLI(t, nil, append([]string{"index", "-i", idx}, append(tc.args, p)...)...); r.code != 0 {
				t.Fatalf("index: %+v", r)
			}
			for _, src := range [][]string{append([]string{p}, tc.args...), {"-i", idx}} {
				for sport, want := range tc.ids {
					args := append([]string{"flows", "-F", "csv"}, src...)
					r := runCLI(t, nil, append(args, "port", sport)...)
					if r.code != 0 {
						t.Fatalf("%v: %+v", args, r)
					}
					lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
					col := slices.Index(strings.Split(lines[0], ","), "packets")
					var ids []string
					for _, l := range lines[1:] {
						f := strings.Split(l, ",")
						ids = append(ids, f[0]+":"+f[col])
					}
					if got := strings.Join(ids, " "); got != want {
						t.Errorf("%v port %s: flows %s, want %s", src, sport, got, want)
					}
				}
				r := runCLI(t, nil, append([]string{"count"}, src...)...)
				if !strings.HasPrefix(r.stdout, "flows "+itoa(tc.flows)+" ") {
					t.Errorf("%v count: %q, want %d flows", src, r.stdout, tc.flows)
				}
			}
		})
	}
	// An index made with one setting refuses captures with another given
	// on the command line, and without flow options goes on with its own:
	// the result is the index of both files made at once with them.
	more := writeCapture(t, "later.pcap", func() *capgen.Capture {
		c := timeoutCapture()
		for i := range c.Packets {
			c.Packets[i].TS += int64(time.Hour)
		}
		return c
	}())
	for _, tc := range []struct {
		made  []string // the index's options
		other []string // options it refuses
		says  string   // what the refusal names
	}{
		{[]string{"--idle-timeout", "0"}, []string{"--idle-timeout", "10m"}, "--idle-timeout"},
		{[]string{"--close-timeout", "1m"}, []string{"--close-timeout", "5s"}, "close timeout 1m0s"},
	} {
		idx := filepath.Join(t.TempDir(), "x.pfidx")
		if r := runCLI(t, nil, append(append([]string{"index", "-i", idx}, tc.made...), p)...); r.code != 0 {
			t.Fatalf("index: %+v", r)
		}
		r := runCLI(t, nil, append(append([]string{"index", "-i", idx}, tc.other...), more)...)
		if r.code != 1 || !strings.Contains(r.stderr, "flow settings differ") || !strings.Contains(r.stderr, tc.says) {
			t.Fatalf("adding with %v to an index made with %v: %+v", tc.other, tc.made, r)
		}
		if r := runCLI(t, nil, "index", "-i", idx, more); r.code != 0 {
			t.Fatalf("adding without options to an index made with %v: %+v", tc.made, r)
		}
		once := filepath.Join(t.TempDir(), "once.pfidx")
		if r := runCLI(t, nil, append(append([]string{"index", "-i", once}, tc.made...), p, more)...); r.code != 0 {
			t.Fatalf("index: %+v", r)
		}
		got := runCLI(t, nil, "flows", "-i", idx, "-F", "csv")
		want := runCLI(t, nil, "flows", "-i", once, "-F", "csv")
		if got.code != 0 || got.stdout != want.stdout {
			t.Errorf("made with %v, then added to without options:\n%s\nboth at once:\n%s", tc.made, got.stdout, want.stdout)
		}
	}
}

// A close timeout that is not a positive duration is a usage error, and
// the index it was asked for is not made.
func TestBadCloseTimeout(t *testing.T) {
	p := writeCapture(t, "timeouts.pcap", timeoutCapture())
	for _, v := range []string{"0", "-5s", "soon"} {
		idx := filepath.Join(t.TempDir(), "x.pfidx")
		r := runCLI(t, nil, "index", "-i", idx, "--close-timeout", v, p)
		if r.code != 2 || !strings.Contains(r.stderr, "close-timeout") {
			t.Errorf("--close-timeout %s: %+v", v, r)
		}
		if _, err := os.Stat(idx); !os.IsNotExist(err) {
			t.Errorf("--close-timeout %s left %s behind (%v)", v, idx, err)
		}
		if r := runCLI(t, nil, "flows", "--close-timeout", v, p); r.code != 2 {
			t.Errorf("flows --close-timeout %s: %+v", v, r)
		}
	}
}
