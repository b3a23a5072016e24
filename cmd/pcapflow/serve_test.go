package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/internal/corpus"
	"github.com/pcapflow/pcapflow/serve"
)

func get(t *testing.T, base, path, token string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, r.Header, b
}

func q(filter string) string { return url.QueryEscape(filter) }

// Every endpoint answers byte for byte what the command answers, on a
// generated capture and on corpus captures.
func TestServeAnswersAsTheCLI(t *testing.T) {
	caps := []string{basicCapture(t), writeCapture(t, "tunnels.pcap", capgen.Tunnels())}
	if dir := corpus.Find(); dir != "" {
		for _, f := range []string{"arkime__http-simple-get.pcap", "zeek__tunnels_vxlan-encapsulated-http.pcap", "arkime__v6-http.pcap"} {
			caps = append(caps, filepath.Join(dir, f))
		}
	}
	for _, capture := range caps {
		idx := filepath.Join(t.TempDir(), "idx")
		if r := runCLI(t, nil, "index", "-i", idx, capture); r.code != 0 {
			t.Fatal(r)
		}
		srv, err := serve.New(serve.Options{Index: idx})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		for _, filter := range []string{"", "tcp", "tcp port 80 or 53", "not tcp", "inner"} {
			for _, extra := range [][]string{nil, {"--sort", "bytes", "--reverse"}, {"--limit", "3", "--offset", "1"}, {"--bidir"}, {"--bidir", "--sort", "packets"}} {
				args := append(append([]string{"flows", "-i", idx, "-F", "json"}, extra...), "--", filter)
				want := runCLI(t, nil, args...).stdout
				params := "filter=" + q(filter)
				for i := 0; i < len(extra); i++ {
					switch extra[i] {
					case "--sort", "--limit", "--offset":
						params += "&" + extra[i][2:] + "=" + extra[i+1]
						i++
					default:
						params += "&" + extra[i][2:] + "=1"
					}
				}
				code, _, got := get(t, hs.URL, "/api/flows?"+params, "")
				if code != 200 || string(got) != want {
					t.Errorf("%s: /api/flows?%s: %d\n got %q\nwant %q", filepath.Base(capture), params, code, got, want)
				}
			}
			want := runCLI(t, nil, "count", "-i", idx, "-F", "json", "--", filter).stdout
			if code, _, got := get(t, hs.URL, "/api/count?filter="+q(filter), ""); code != 200 || string(got) != want {
				t.Errorf("%s: /api/count %q: %s, want %s", filepath.Base(capture), filter, got, want)
			}
			out := filepath.Join(t.TempDir(), "x.pcap")
			runCLI(t, nil, "extract", "-i", idx, "-w", out, "--", filter)
			wantPcap, _ := os.ReadFile(out)
			code, h, got := get(t, hs.URL, "/api/extract?filter="+q(filter), "")
			if code != 200 || !bytes.Equal(got, wantPcap) || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
				t.Errorf("%s: /api/extract %q: %d, %d bytes, want %d", filepath.Base(capture), filter, code, len(got), len(wantPcap))
			}
			code, _, got = get(t, hs.URL, "/api/explain?filter="+q(filter), "")
			var plan struct {
				Matching int `json:"matching"`
			}
			if code != 200 || json.Unmarshal(got, &plan) != nil {
				t.Errorf("/api/explain %q: %d %s", filter, code, got)
			}
		}
		// One flow's stream, with and without the segment header.
		var all struct{ Flows int }
		json.Unmarshal([]byte(runCLI(t, nil, "count", "-i", idx, "-F", "json").stdout), &all)
		for id := 1; id <= min(4, all.Flows); id++ {
			for _, hdr := range []bool{false, true} {
				args := []string{"streams", "-i", idx, "-w", "-", "flow", fmt.Sprint(id)}
				path := fmt.Sprintf("/api/streams/%d", id)
				if hdr {
					args = append(args, "--tcpheader")
					path += "?tcpheader=1"
				}
				want := runCLI(t, nil, args...).stdout
				if code, _, got := get(t, hs.URL, path, ""); code != 200 || string(got) != want {
					t.Errorf("%s: %s: %d, %d bytes, want %d", filepath.Base(capture), path, code, len(got), len(want))
				}
			}
		}
		hs.Close()
		srv.Close()
	}
}

// Errors are JSON with the HTTP status: a bad filter with its offset, an
// unknown flow, an unknown path; with a token, every API request needs
// it, and the page does not.
func TestServeErrorsAndAuth(t *testing.T) {
	p := basicCapture(t)
	idx := filepath.Join(t.TempDir(), "idx")
	runCLI(t, nil, "index", "-i", idx, p)
	const token = "0123456789abcdef0123456789abcdef"
	srv, err := serve.New(serve.Options{Index: idx, Token: token, MaxFilter: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	for _, tc := range []struct {
		path, token string
		code        int
		want        string
	}{
		{"/api/count", "", 401, "token"},
		{"/api/count", "wrong", 401, "token"},
		{"/api/count", token + "x", 401, "token"},
		{"/api/count", token, 200, `"flows":17`},
		{"/api/count?filter=" + q("host 10.0.0.1 and port"), token, 400, `"offset":22`},
		{"/api/flows?filter=" + q("tcp or udp and port 53"), token, 400, "parentheses"},
		{"/api/flows?sort=size", token, 400, "sort"},
		{"/api/flows?limit=-1", token, 400, "limit"},
		{"/api/flows?format=xml", token, 400, `unknown format`},
		{"/api/flows?format=xml&bidir=1", token, 400, `unknown format`},
		{"/api/count?filter=" + q(strings.Repeat("tcp and ", 20)+"tcp"), token, 400, "at most 100"},
		{"/api/streams/999", token, 404, "no such flow"},
		{"/api/streams/abc", token, 400, "flow ID"},
		{"/api/follow/0", token, 400, "flow ID"},
		{"/api/nothing", token, 404, "no such API"},
		{"/api/extract?from=yesterday", token, 400, "RFC 3339"},
		{"/", "", 200, "<!doctype html>"},
		{"/app.js", "", 200, "pcapflow"},
		{"/etc/passwd", "", 404, ""},
	} {
		code, h, body := get(t, hs.URL, tc.path, tc.token)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s (token %q): %d %s, want %d with %q", tc.path, tc.token, code, body, tc.code, tc.want)
		}
		if code >= 400 && strings.HasPrefix(tc.path, "/api/") && h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: error as %s", tc.path, h.Get("Content-Type"))
		}
		if h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: CORS allowed", tc.path)
		}
	}
	// serve refuses to listen beyond loopback without a token.
	if r := runCLI(t, nil, "serve", "-i", idx, "--listen", "0.0.0.0:0"); r.code != 2 || !strings.Contains(r.stderr, "--token-file") {
		t.Errorf("serve on 0.0.0.0 without a token: %+v", r)
	}
}

// A client that hangs up in the middle of a large download cancels it;
// the server answers the next requests as before, and every heavy slot
// comes back.
func TestServeClientHangsUp(t *testing.T) {
	var b bytes.Buffer
	capgen.Mix(capgen.MixOptions{Seed: 2, Bytes: 24 << 20, Active: 200}).WritePcap(&b, capgen.PcapOptions{})
	p := filepath.Join(t.TempDir(), "big.pcap")
	os.WriteFile(p, b.Bytes(), 0o644)
	idx := filepath.Join(t.TempDir(), "idx")
	runCLI(t, nil, "index", "-i", idx, p)
	srv, err := serve.New(serve.Options{Index: idx, Heavy: 2, QueueWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	for i := 0; i < 6; i++ { // more hang-ups than heavy slots
		conn, err := net.Dial("tcp", hs.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /api/extract HTTP/1.1\r\nHost: x\r\n\r\n")
		buf := make([]byte, 64<<10)
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/extract?filter=flow+1", nil)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("after the hang-ups: %v", err)
		}
		n, _ := io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || n < 24 {
			t.Fatalf("after the hang-ups: %d, %d bytes", r.StatusCode, n)
		}
	}
}

// --watch: captures copied into the directory one by one are indexed as
// they come; the counts grow and end as an index of the whole directory.
func TestServeWatch(t *testing.T) {
	parts := splitCapture(t, capgen.Mix(capgen.MixOptions{Seed: 8, Bytes: 2 << 20, Active: 50, MeanPackets: 20}), 4)
	watch := t.TempDir()
	idx := filepath.Join(t.TempDir(), "idx")
	hs := watchServer(t, idx, watch)
	count := func() int {
		code, _, body := get(t, hs.URL, "/api/count", "")
		if code == 503 {
			return 0
		}
		var c struct{ Packets int }
		json.Unmarshal(body, &c)
		return c.Packets
	}
	last := 0
	for i, part := range parts {
		// Written under a hidden name and renamed into place, as a
		// sensor's rotation does.
		tmp := filepath.Join(watch, ".part")
		os.WriteFile(tmp, part, 0o644)
		os.Rename(tmp, filepath.Join(watch, fmt.Sprintf("x.pcap%d", i)))
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := count()
			if n < last {
				t.Fatalf("the count went down: %d after %d", n, last)
			}
			if n > last {
				last = n
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("part %d was not indexed", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	whole := filepath.Join(t.TempDir(), "whole")
	runCLI(t, nil, "index", "-i", whole, watch)
	want := runCLI(t, nil, "flows", "-i", whole, "-F", "json").stdout
	_, _, got := get(t, hs.URL, "/api/flows", "")
	if string(got) != want {
		t.Errorf("after watching, the flows differ from an index of the directory")
	}
}

// --watch on an index made with other flow settings than the defaults
// adds with the index's own: the server has no flow options to ask.
func TestServeWatchKeepsSettings(t *testing.T) {
	parts := splitCapture(t, capgen.Mix(capgen.MixOptions{Seed: 9, Bytes: 1 << 20, Active: 50, MeanPackets: 20}), 2)
	dir := t.TempDir()
	first := filepath.Join(dir, "x.pcap")
	os.WriteFile(first, parts[0], 0o644)
	idx := filepath.Join(t.TempDir(), "idx")
	if r := runCLI(t, nil, "index", "-i", idx, "--close-timeout", "1m", "--idle-timeout", "30m", first); r.code != 0 {
		t.Fatalf("index: %+v", r)
	}
	watch := t.TempDir()
	hs := watchServer(t, idx, watch)
	second := filepath.Join(watch, "x.pcap1")
	os.WriteFile(filepath.Join(watch, ".part"), parts[1], 0o644)
	os.Rename(filepath.Join(watch, ".part"), second)
	whole := filepath.Join(t.TempDir(), "whole")
	runCLI(t, nil, "index", "-i", whole, "--close-timeout", "1m", "--idle-timeout", "30m", first, second)
	want := runCLI(t, nil, "flows", "-i", whole, "-F", "json").stdout
	_, _, body := get(t, hs.URL, "/api/status", "")
	var st struct{ Settings map[string]any }
	if err := json.Unmarshal(body, &st); err != nil || st.Settings["idle_timeout"] != "30m0s" || st.Settings["close_timeout"] != "1m0s" {
		t.Errorf("status: settings %v (%v), want the index's 30m0s and 1m0s", st.Settings, err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, _, got := get(t, hs.URL, "/api/flows", ""); string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			_, _, got := get(t, hs.URL, "/api/flows", "")
			t.Fatalf("the watched capture was not added with the index's settings: %d bytes of flows, want %d", len(got), len(want))
		}
	}
}

// /api/status lists what the command line warns of before each answer:
// here a capture that grew after it was indexed (and so was cut in its
// last record when it was read).
func TestServeStatusWarnings(t *testing.T) {
	p, whole := cutCapture(t)
	idx := filepath.Join(t.TempDir(), "idx")
	runCLI(t, nil, "index", "-i", idx, p)
	status := func() []string {
		t.Helper()
		hs := testServer(t, serve.Options{Index: idx})
		_, _, body := get(t, hs.URL, "/api/status", "")
		var st struct{ Warnings []string }
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("status: %v: %s", err, body)
		}
		return st.Warnings
	}
	if w := status(); len(w) != 1 || !strings.Contains(w[0], "middle of a record") {
		t.Errorf("cut capture: warnings %q, want the cut", w)
	}
	os.WriteFile(p, whole, 0o644)
	if w := status(); len(w) != 2 || !strings.Contains(w[1], "grew from") {
		t.Errorf("grown capture: warnings %q, want the cut and the growth", w)
	}
}

// watchServer serves index idx over HTTP, watching directory watch, until
// the test ends.
func watchServer(t *testing.T, idx, watch string) *httptest.Server {
	t.Helper()
	return testServer(t, serve.Options{Index: idx, Watch: watch, Settle: 100 * time.Millisecond})
}

// testServer serves what o says over HTTP until the test ends.
func testServer(t *testing.T, o serve.Options) *httptest.Server {
	t.Helper()
	srv, err := serve.New(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return hs
}

// splitCapture cuts a capture into n pcaps of consecutive packets, as a
// rotation does.
func splitCapture(t *testing.T, c *capgen.Capture, n int) [][]byte {
	t.Helper()
	var out [][]byte
	per := (len(c.Packets) + n - 1) / n
	for i := 0; i < len(c.Packets); i += per {
		part := &capgen.Capture{Packets: c.Packets[i:min(i+per, len(c.Packets))]}
		var b bytes.Buffer
		if err := part.WritePcap(&b, capgen.PcapOptions{Nanos: true}); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	return out
}

// The page in a real browser (Chromium driven by playwright-core): a
// filter in the URL shows the right flows, a bad filter shows the caret,
// the keyboard works, a flow's follow view shows both sides, and the
// downloaded pcap is the bytes extract writes. CI installs chromium,
// node and playwright-core (.ci/run); elsewhere the test says what is
// missing and skips. PCAPFLOW_SCREENSHOTS=DIR saves the page's pictures.
func TestServePage(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed (.ci/run installs nodejs and playwright-core)")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed (.ci/run installs it)")
	}
	if err := exec.Command(node, "-e", "require.resolve('playwright-core')").Run(); err != nil {
		t.Skip("playwright-core not found by node (npm install playwright-core; NODE_PATH; .ci/run does it)")
	}
	p := basicCapture(t)
	idx := filepath.Join(t.TempDir(), "idx")
	runCLI(t, nil, "index", "-i", idx, p)
	flow1 := filepath.Join(t.TempDir(), "flow1.pcap")
	runCLI(t, nil, "extract", "-i", idx, "-w", flow1, "flow", "1")
	hs := testServer(t, serve.Options{Index: idx})
	// A capture indexed while still being written, then grown.
	grownCap, whole := cutCapture(t)
	grownIdx := filepath.Join(t.TempDir(), "grown")
	runCLI(t, nil, "index", "-i", grownIdx, grownCap)
	os.WriteFile(grownCap, whole, 0o644)
	grownHS := testServer(t, serve.Options{Index: grownIdx})
	args := []string{"testdata/page_test.js", hs.URL, flow1, grownHS.URL}
	if d := os.Getenv("PCAPFLOW_SCREENSHOTS"); d != "" {
		args = append(args, d)
	}
	cmd := exec.Command(node, args...)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("page test: %v\n%s", err, out)
	}
}

// -i URL: every command asks a pcapflow serve and prints what it prints
// with the index at hand; a missing or wrong token fails saying so.
func TestRemoteAnswersAsLocal(t *testing.T) {
	for _, capture := range []string{basicCapture(t), writeCapture(t, "tunnels.pcap", capgen.Tunnels())} {
		idx := filepath.Join(t.TempDir(), "idx")
		runCLI(t, nil, "index", "-i", idx, capture)
		const token = "fedcba9876543210fedcba9876543210"
		srv, err := serve.New(serve.Options{Index: idx, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		tokFile := filepath.Join(t.TempDir(), "token")
		os.WriteFile(tokFile, []byte(token+"\n"), 0o600)
		t.Setenv("TZ", "")
		for _, args := range [][]string{
			{"flows"}, {"flows", "-F", "json"}, {"flows", "-F", "csv", "tcp"}, {"flows", "-F", "seed"},
			{"flows", "-F", "zeek"}, {"flows", "--bidir"}, {"flows", "--bidir", "-F", "json", "--sort", "bytes", "--reverse"},
			{"flows", "--sort", "duration", "--limit", "3", "--offset", "2"}, {"flows", "--tz", "Asia/Tokyo", "udp"},
			{"count"}, {"count", "-F", "json", "tcp", "port", "80", "or", "53"},
			{"streams", "-w", "-", "tcp"}, {"streams", "-w", "-", "--tcpheader", "tcp"},
			{"extract", "-w", "-", "tcp"}, {"extract", "-w", "-", "--format", "pcapng", "flow", "1"},
			{"follow", "flow", "1"}, {"follow", "--hex", "flow", "2"}, {"follow", "--all", "tcp"},
		} {
			local := runCLI(t, nil, append([]string{args[0], "-i", idx}, args[1:]...)...)
			remote := runCLI(t, nil, append([]string{args[0], "-i", hs.URL, "--token-file", tokFile}, args[1:]...)...)
			if remote.code != local.code || remote.stdout != local.stdout {
				t.Errorf("%s %v: remote %d %q\nlocal %d %q", filepath.Base(capture), args, remote.code, trunc(remote.stdout), local.code, trunc(local.stdout))
			}
		}
		// The token from the environment works too; none or a wrong one
		// fails with exit 1 and says where the token comes from.
		t.Setenv("PCAPFLOW_TOKEN", token)
		if r := runCLI(t, nil, "count", "-i", hs.URL); r.code != 0 {
			t.Errorf("token from $PCAPFLOW_TOKEN: %+v", r)
		}
		t.Setenv("PCAPFLOW_TOKEN", "wrong")
		if r := runCLI(t, nil, "count", "-i", hs.URL); r.code != 1 || !strings.Contains(r.stderr, "--token-file") {
			t.Errorf("a wrong token: %+v", r)
		}
		t.Setenv("PCAPFLOW_TOKEN", token)
		// A bad filter: the caret, exit 2, as locally.
		if r := runCLI(t, nil, "count", "-i", hs.URL, "tcp", "or", "udp", "and", "port", "53"); r.code != 2 || !strings.Contains(r.stderr, "^") {
			t.Errorf("a bad filter over -i URL: %+v", r)
		}
		hs.Close()
		srv.Close()
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
