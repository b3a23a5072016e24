package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pcapflow/pcapflow/internal/capgen"
)

// smallDisk mounts a tmpfs of the given size (mount(8) syntax: 64k) for
// the test: a real full disk. It skips where mounting is not allowed.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the disk is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

func remount(t *testing.T, dir, opt string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opt, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v %s", opt, err, out)
	}
}

func bigCapture(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	if err := capgen.Mix(capgen.MixOptions{Seed: 4, Bytes: 24 << 20, Active: 2000, MeanPackets: 4}).WritePcap(&b, capgen.PcapOptions{Nanos: true}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "big.pcap")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// On a full disk every command that writes ends with exit 1 and an error
// naming the path; it leaves nothing partial, an existing output and a
// committed index as they were.
func TestFullDisk(t *testing.T) {
	big := bigCapture(t)
	small := basicCapture(t)

	t.Run("index", func(t *testing.T) {
		disk := smallDisk(t, "96k")
		idx := filepath.Join(disk, "idx")
		r := runCLI(t, nil, "index", "-i", idx, big)
		if r.code != 1 || !strings.Contains(r.stderr, idx) || !strings.Contains(r.stderr, "no space left on device") {
			t.Fatalf("index onto a full disk: %+v", r)
		}
		if strings.Contains(r.stderr, "indexed ") {
			t.Errorf("a success summary for a failed run: %s", r.stderr)
		}
		if _, err := os.Stat(idx); !os.IsNotExist(err) {
			t.Errorf("a failed new index left %s behind (%v)", idx, err)
		}
	})

	t.Run("add", func(t *testing.T) {
		disk := smallDisk(t, "192k")
		idx := filepath.Join(disk, "idx")
		if r := runCLI(t, nil, "index", "-i", idx, small); r.code != 0 {
			t.Fatalf("index: %+v", r)
		}
		before := runCLI(t, nil, "flows", "-i", idx, "-F", "json").stdout
		later := shifted(t, big, small)
		r := runCLI(t, nil, "index", "-i", idx, later)
		if r.code != 1 || !strings.Contains(r.stderr, idx) || !strings.Contains(r.stderr, "no space left on device") {
			t.Fatalf("adding onto a full disk: %+v", r)
		}
		if got := runCLI(t, nil, "flows", "-i", idx, "-F", "json"); got.code != 0 || got.stdout != before {
			t.Fatalf("after the failed add the index answers differently: %+v", got)
		}
		// Room again: the add completes.
		os.Remove(filepath.Join(disk, "filler"))
		remount(t, disk, "size=8m")
		if r := runCLI(t, nil, "index", "-i", idx, later); r.code != 0 {
			t.Fatalf("adding with room: %+v", r)
		}
		if got := runCLI(t, nil, "count", "-i", idx); got.code != 0 || got.stdout == "" {
			t.Fatalf("count: %+v", got)
		}
	})

	t.Run("export", func(t *testing.T) {
		idx := filepath.Join(t.TempDir(), "idx")
		if r := runCLI(t, nil, "index", "-i", idx, big); r.code != 0 {
			t.Fatalf("index: %+v", r)
		}
		disk := smallDisk(t, "256k")
		fill(t, disk)
		r := runCLI(t, nil, "export", "-i", idx, "-o", filepath.Join(disk, "export"), "--sensor", "s1")
		if r.code != 1 || !strings.Contains(r.stderr, disk) || !strings.Contains(r.stderr, "no space left on device") {
			t.Errorf("export on a full disk: %+v", r)
		}
		var left []string
		filepath.WalkDir(filepath.Join(disk, "export"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("a failed export left %d files, first %s", len(left), left[0])
		}
	})

	t.Run("extract and streams", func(t *testing.T) {
		disk := smallDisk(t, "256k")
		keep := filepath.Join(disk, "keep.pcap")
		os.WriteFile(keep, []byte("an existing output"), 0o644)
		existing := filepath.Join(disk, "streams")
		os.Mkdir(existing, 0o755)
		os.WriteFile(filepath.Join(existing, "old"), []byte("an existing stream"), 0o644)
		fill(t, disk)
		for _, tc := range []struct {
			args []string
			out  string
		}{
			{[]string{"extract", big, "-w", filepath.Join(disk, "x.pcap")}, "x.pcap"},
			{[]string{"extract", big, "-w", keep, "--force"}, ""},
			{[]string{"streams", big, "-O", filepath.Join(disk, "out")}, "out"},
			{[]string{"streams", big, "-O", existing, "--force"}, ""},
			{[]string{"compat", big, "--extract-port", "0", "65535", "-o", filepath.Join(disk, "c.pcap")}, "c.pcap"},
			{[]string{"compress", big, "-o", filepath.Join(disk, "x.pcap.zst")}, "x.pcap.zst"},
			{[]string{"compress", big, "-o", keep, "--force"}, ""},
		} {
			r := runCLI(t, nil, tc.args...)
			if r.code != 1 || !strings.Contains(r.stderr, disk) || !strings.Contains(r.stderr, "no space left on device") {
				t.Errorf("%v on a full disk: %+v", tc.args, r)
			}
			ents, _ := os.ReadDir(disk)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if got := strings.Join(names, " "); got != "filler keep.pcap streams" {
				t.Errorf("%v left %s", tc.args, got)
			}
		}
		if b, _ := os.ReadFile(keep); string(b) != "an existing output" {
			t.Errorf("the existing output changed: %q", b)
		}
		if ents, _ := os.ReadDir(existing); len(ents) != 1 {
			t.Errorf("the existing stream directory holds %d files, want its one", len(ents))
		}
	})
}

// shifted writes a copy of c moved after the end of after (so that it can
// be added to an index of after).
func shifted(t *testing.T, c, after string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "later.pcap")
	r := exec.Command("editcap", "-t", "86400", c, out)
	if b, err := r.CombinedOutput(); err != nil {
		t.Skipf("editcap: %v %s (.ci/run installs tshark, which has it)", err, b)
	}
	return out
}

// A read-only index answers every query; index into it says it is
// read-only.
func TestReadOnlyIndex(t *testing.T) {
	disk := smallDisk(t, "8m")
	p := basicCapture(t)
	idx := filepath.Join(disk, "idx")
	if r := runCLI(t, nil, "index", "-i", idx, p); r.code != 0 {
		t.Fatalf("index: %+v", r)
	}
	want := runCLI(t, nil, "flows", "-i", idx, "-F", "json").stdout
	remount(t, disk, "ro")
	defer remount(t, disk, "rw")
	if r := runCLI(t, nil, "flows", "-i", idx, "-F", "json"); r.code != 0 || r.stdout != want {
		t.Fatalf("flows on a read-only index: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "x.pcap")
	if r := runCLI(t, nil, "extract", "-i", idx, "-w", out, "tcp"); r.code != 0 {
		t.Fatalf("extract from a read-only index: %+v", r)
	}
	r := runCLI(t, nil, "index", "-i", idx, bigCapture(t))
	if r.code != 1 || !strings.Contains(r.stderr, "read-only") || !strings.Contains(r.stderr, idx) {
		t.Fatalf("index into a read-only index: %+v", r)
	}
}
