package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/query"
)

// buildBinary compiles pcapflow for tests that need a real process.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pcapflow")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// manyFlows writes a capture of n short TCP connections.
func manyFlows(t *testing.T, dir, name string, n, seed int) string {
	t.Helper()
	c := capgen.New(capgen.Start + int64(seed)*1e12)
	r := rand.New(rand.NewSource(int64(seed)))
	for i := 0; i < n; i++ {
		a := capgen.Endpoint{MAC: capgen.MAC(1), IP: netip.AddrFrom4([4]byte{10, byte(seed), byte(i >> 8), byte(i)}), Port: uint16(1024 + r.Intn(60000))}
		b := capgen.Endpoint{MAC: capgen.MAC(2), IP: netip.MustParseAddr("192.0.2.10"), Port: 80}
		conn := c.NewTCP(a, b, r.Uint32(), r.Uint32())
		conn.Handshake()
		conn.Data(true, []byte("GET / HTTP/1.0\r\n\r\n"))
		conn.Data(false, capgen.Text("reply", 200+r.Intn(2000)))
		conn.Close()
	}
	p := filepath.Join(dir, name)
	var buf bytes.Buffer
	c.WritePcap(&buf, capgen.PcapOptions{})
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// SIGKILL an index build at random moments: the next query either
// answers exactly as a fresh index does or refuses with "incomplete
// index"; running index again completes it.
func TestKillIndexAtRandomPoints(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	caps := []string{manyFlows(t, dir, "a.pcap", 15000, 1), manyFlows(t, dir, "b.pcap", 15000, 2)}
	fresh := filepath.Join(dir, "fresh.pfidx")
	if out, err := exec.Command(bin, append([]string{"index", "-i", fresh}, caps...)...).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	want, err := exec.Command(bin, "flows", "-F", "json", "-i", fresh).Output()
	if err != nil {
		t.Fatal(err)
	}
	// An index of the first capture alone: what a kill that lands before
	// the second run commits anything leaves behind, a complete index.
	firstOnly := filepath.Join(dir, "first.pfidx")
	if out, err := exec.Command(bin, "index", "-i", firstOnly, caps[0]).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	wantFirst, err := exec.Command(bin, "flows", "-F", "json", "-i", firstOnly).Output()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	exec.Command(bin, append([]string{"index", "-i", filepath.Join(dir, "timing.pfidx")}, caps...)...).Run()
	full := time.Since(start)
	r := rand.New(rand.NewSource(7))
	refused, answered := 0, 0
	for i := 0; i < 10; i++ {
		idx := filepath.Join(dir, fmt.Sprintf("k%d.pfidx", i))
		if i%3 == 2 { // an index that already holds the first capture
			exec.Command(bin, "index", "-i", idx, caps[0]).Run()
		}
		cmd := exec.Command(bin, append([]string{"index", "-i", idx}, caps...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(r.Int63n(int64(full))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		out, err := exec.Command(bin, "flows", "-F", "json", "-i", idx).Output()
		switch {
		case err == nil && bytes.Equal(out, want):
			answered++
		case err == nil && i%3 == 2 && bytes.Equal(out, wantFirst):
			// Killed before the second run marked the index as building:
			// the first capture's committed index still stands, whole.
			answered++
		case err != nil && i%3 == 2 && len(out) == 0:
			// The kill hit the second run: the committed first capture must
			// not be hidden behind a refusal forever; index completes it.
			refused++
		case err != nil:
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			if !strings.Contains(stderr, "incomplete index") && !strings.Contains(stderr, "not a pcapflow index") && !strings.Contains(stderr, "no such file") {
				t.Fatalf("kill %d: query failed without saying the index is incomplete: %s", i, stderr)
			}
			refused++
		default:
			t.Fatalf("kill %d: the query answered differently from a fresh index", i)
		}
		if out, err := exec.Command(bin, append([]string{"index", "-i", idx}, caps...)...).CombinedOutput(); err != nil {
			t.Fatalf("kill %d: index again: %v %s", i, err, out)
		}
		if out, err := exec.Command(bin, "flows", "-F", "json", "-i", idx).Output(); err != nil || !bytes.Equal(out, want) {
			t.Fatalf("kill %d: completed index differs from a fresh one (%v)", i, err)
		}
	}
	t.Logf("index took %v; of 10 kills, %d left a refused index and %d a complete one", full, refused, answered)
}

// A capture that changes after indexing is never answered from the stale
// index: the error says so and how to rebuild.
func TestStaleIndexCLI(t *testing.T) {
	p := basicCapture(t)
	runCLI(t, nil, "index", p)
	b, _ := os.ReadFile(p)
	for name, change := range map[string]func(){
		"rewritten": func() {
			c := append([]byte(nil), b...)
			c[len(c)-5] ^= 0xff
			os.WriteFile(p, c, 0o644)
		},
		"grown, its end rewritten": func() {
			c := append([]byte(nil), b...)
			c[len(c)-5] ^= 0xff
			os.WriteFile(p, append(c, 0), 0o644)
		},
		"replaced": func() {
			other := capgen.Files()[1].Make() // same packets, other format
			os.Remove(p)
			os.WriteFile(p, other, 0o644)
		},
	} {
		change()
		r := runCLI(t, nil, "flows", p)
		if r.code != 1 || !strings.Contains(r.stderr, "stale") || !strings.Contains(r.stderr, "rebuild") {
			t.Errorf("%s: %+v", name, r)
		}
		os.WriteFile(p, b, 0o644)
	}
}

// A capture still being written when it was indexed, which then grew: a
// query answers from the index for what it read, says so and how to read
// it all; an index run over it (a sensor's cron line) passes over it
// with the same warning instead of failing. --scan reads it whole.
func TestGrownCaptureCLI(t *testing.T) {
	p, b := cutCapture(t)
	if r := runCLI(t, nil, "index", p); r.code != 0 {
		t.Fatalf("index of the cut capture: %+v", r)
	}
	cut := runCLI(t, nil, "count", p)
	os.WriteFile(p, b, 0o644)
	r := runCLI(t, nil, "count", p)
	if r.code != 0 || r.stdout != cut.stdout || !strings.Contains(r.stderr, "grew from") || !strings.Contains(r.stderr, "--scan") {
		t.Errorf("count of the grown capture: %+v; want %q, a warning that it grew and what to do", r, cut.stdout)
	}
	whole := runCLI(t, nil, "count", "--scan", p)
	if whole.code != 0 || whole.stdout == cut.stdout {
		t.Errorf("count --scan: %+v, want more than the index's %q", whole, cut.stdout)
	}
	if r := runCLI(t, nil, "index", p); r.code != 0 || !strings.Contains(r.stderr, "grew from") || !strings.Contains(r.stderr, "nothing new") {
		t.Errorf("index over the grown capture: %+v", r)
	}
}

// index --settle leaves a capture still being written (modified too
// recently) for a later run, says so on every run, and takes it once it
// has settled; a cron line over a sensor's directory then never indexes
// its newest file half-written.
func TestSettleCLI(t *testing.T) {
	p := basicCapture(t)
	idx := filepath.Join(t.TempDir(), "idx")
	r := runCLI(t, nil, "index", "-i", idx, "--settle", "1h", p)
	if r.code != 0 || !strings.Contains(r.stderr, "left 1 capture for a later run") {
		t.Errorf("a capture just written: %+v", r)
	}
	if _, err := os.Stat(idx); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("nothing was ready, yet the index was made (%v)", err)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(p, old, old)
	if r := runCLI(t, nil, "index", "-i", idx, "--settle", "1h", p); r.code != 0 || !strings.Contains(r.stderr, "indexed 1 capture") {
		t.Errorf("a settled capture: %+v", r)
	}
	if r := runCLI(t, nil, "index", "-i", idx, "--settle", "-1s", p); r.code != 2 {
		t.Errorf("a negative settle time: %+v", r)
	}
}

// A failed run leaves no output that looks complete; an existing output
// is kept without --force.
func TestOutputSafety(t *testing.T) {
	p := basicCapture(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "x.pcap")
	os.WriteFile(out, []byte("precious"), 0o644)
	if r := runCLI(t, nil, "extract", p, "-w", out, "flow", "1"); r.code != 2 {
		t.Errorf("overwrote without --force: %+v", r)
	}
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Error("existing output changed")
	}
	// A file where streams -O wants its directory is refused, --force or
	// not, and kept: publishing would remove it to put the directory
	// there.
	for _, force := range []bool{false, true} {
		args := []string{"streams", p, "-O", out}
		if force {
			args = append(args, "--force")
		}
		if r := runCLI(t, nil, append(args, "tcp")...); r.code != 1 || !strings.Contains(r.stderr, "not a directory") {
			t.Errorf("streams -O onto a file (force %v): %+v", force, r)
		}
		if b, _ := os.ReadFile(out); string(b) != "precious" {
			t.Fatalf("streams -O onto a file (force %v) changed it", force)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".x.pcap.partial-*")); len(left) > 0 {
		t.Errorf("staging directory left: %v", left)
	}
	// A failing extraction (the capture shrinks under the index) leaves
	// neither a partial output nor a temporary file.
	runCLI(t, nil, "index", p)
	data, _ := os.ReadFile(p)
	bad := filepath.Join(dir, "bad.pcap")
	idx := index.DefaultPath(p)
	st, err := index.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	os.WriteFile(p, data[:len(data)/2], 0o644)
	os.Chtimes(p, time.Unix(0, st.Captures()[0].ModTime), time.Unix(0, st.Captures()[0].ModTime))
	r := runCLI(t, nil, "extract", "-i", idx, "-w", bad, "flow", "16")
	ents, _ := os.ReadDir(dir)
	if r.code == 0 || len(ents) != 1 {
		t.Errorf("failed extract: %+v, files %v", r, ents)
	}
	// A failing streams -O run publishes only the streams that ended
	// before the failure, and leaves no staging directory or partial file.
	sdir := filepath.Join(dir, "s")
	r = runCLI(t, nil, "streams", "-i", idx, "-O", sdir, "tcp")
	if r.code == 0 {
		t.Errorf("streams on a damaged capture succeeded: %+v", r)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".s.partial-*")); len(left) > 0 {
		t.Errorf("staging directory left: %v", left)
	}
	files, _ := os.ReadDir(sdir)
	for _, f := range files {
		if strings.HasSuffix(f.Name(), ".partial") {
			t.Errorf("partial stream file left: %s", f.Name())
		}
	}
	os.WriteFile(p, data, 0o644) // as indexed: the same run now writes every stream
	os.Chtimes(p, time.Unix(0, st.Captures()[0].ModTime), time.Unix(0, st.Captures()[0].ModTime))
	full := filepath.Join(dir, "full")
	if r := runCLI(t, nil, "streams", "-i", idx, "-O", full, "tcp"); r.code != 0 {
		t.Fatalf("streams: %+v", r)
	}
	all, _ := os.ReadDir(full)
	if len(files) >= len(all) {
		t.Errorf("the failed run wrote %d stream files, the full run %d", len(files), len(all))
	}
	for _, f := range files { // what the failed run published is complete
		a, _ := os.ReadFile(filepath.Join(sdir, f.Name()))
		b, _ := os.ReadFile(filepath.Join(full, f.Name()))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from the full run's", f.Name())
		}
	}
}

// Many readers of one index at once, in goroutines and in processes,
// all get the same answers.
func TestConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	p := manyFlows(t, dir, "c.pcap", 3000, 3)
	if r := runCLI(t, nil, "index", p); r.code != 0 {
		t.Fatal(r)
	}
	st, err := index.Open(index.DefaultPath(p))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	filters := []string{"", "port 80 and host 10.3.1.17", "packets > 5", "not tcp", "net 10.3.0.0/20 and bytes < 1K"}
	want := map[string]string{}
	for _, f := range filters {
		e, _ := query.Parse(f)
		ids, err := query.SelectIDs(context.Background(), st, e)
		if err != nil {
			t.Fatal(err)
		}
		want[f] = fmt.Sprint(ids)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				f := filters[(g+i)%len(filters)]
				e, _ := query.Parse(f)
				ids, err := query.SelectIDs(context.Background(), st, e)
				if err != nil || fmt.Sprint(ids) != want[f] {
					errs <- fmt.Sprintf("goroutine %d filter %q: %v", g, f, err)
				}
				packets := map[uint64]uint64{}
				some := ids[:min(len(ids), 5)]
				st.Flows(context.Background(), some, func(fl *flow.Flow) error {
					packets[fl.ID] = fl.Packets
					return nil
				})
				st.PacketsOf(context.Background(), some, func(id uint64, refs []index.PacketRef) error {
					if len(refs) != int(packets[id]) {
						errs <- fmt.Sprintf("flow %d: %d refs for %d packets", id, len(refs), packets[id])
					}
					return nil
				})
			}
		}(g)
	}
	// And other processes at the same time.
	bin := buildBinary(t)
	wantCount, _ := exec.Command(bin, "count", p, "port", "80").Output()
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				out, err := exec.Command(bin, "count", p, "port", "80").Output()
				if err != nil || !bytes.Equal(out, wantCount) {
					errs <- fmt.Sprintf("process: %v %s", err, out)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
