//go:build unix

package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Outputs that are not regular files are written in place: /dev/null and
// a FIFO stay what they are (renaming a finished file over /dev/null, as
// root, would replace the device), and a symbolic link keeps pointing at
// the file it names, which gets the output.
func TestOutputToDeviceFIFOAndSymlink(t *testing.T) {
	p := basicCapture(t)
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular.pcap")
	if r := runCLI(t, nil, "extract", p, "-w", regular, "flow", "1"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	want, _ := os.ReadFile(regular)

	// A null device of our own (as root, on Linux: major 1, minor 3), so
	// that a regression replaces it rather than the machine's /dev/null.
	null := filepath.Join(dir, "null")
	if runtime.GOOS != "linux" || syscall.Mknod(null, syscall.S_IFCHR|0o666, 1<<8|3) != nil {
		t.Log("no null device of our own (needs root on Linux): skipping the device case")
	} else {
		for _, args := range [][]string{
			{"extract", p, "-w", null, "flow", "1"},
			{"extract", p, "-w", null, "--force", "flow", "1"},
			{"streams", p, "-w", null, "--tcpheader"},
		} {
			if r := runCLI(t, nil, args...); r.code != 0 {
				t.Errorf("%v: %+v", args, r)
			}
			if fi, err := os.Stat(null); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
				t.Fatalf("%v replaced the device: %v %v", args, fi.Mode(), err)
			}
		}
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	got := make(chan []byte)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(f)
		f.Close()
		got <- b
	}()
	if r := runCLI(t, nil, "extract", p, "-w", fifo, "flow", "1"); r.code != 0 {
		t.Fatalf("to a FIFO: %+v", r)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Errorf("the FIFO's reader got %d bytes, want the %d of a file", len(b), len(want))
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v %v", fi.Mode(), err)
	}

	target := filepath.Join(dir, "target.pcap")
	link := filepath.Join(dir, "link.pcap")
	os.WriteFile(target, []byte("old"), 0o644)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, nil, "extract", p, "-w", link, "--force", "flow", "1"); r.code != 0 {
		t.Fatalf("to a symlink: %+v", r)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced by a file")
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, want) {
		t.Errorf("the symlink's target holds %d bytes, want %d", len(b), len(want))
	}
}

// An output file is an ordinary file: created with 0666 less the umask
// (not the 0600 of the temporary name it is written under), and a file it
// replaces keeps its permissions.
func TestOutputPermissions(t *testing.T) {
	p := basicCapture(t)
	dir := t.TempDir()
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	out := filepath.Join(dir, "new.pcap")
	if r := runCLI(t, nil, "extract", p, "-w", out, "flow", "1"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o640 {
		t.Errorf("new output has mode %v, want 0640 under umask 027", fi.Mode().Perm())
	}
	os.Chmod(out, 0o604)
	if r := runCLI(t, nil, "extract", p, "-w", out, "--force", "flow", "2"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o604 {
		t.Errorf("replaced output has mode %v, want its old 0604", fi.Mode().Perm())
	}
}

// An output that cannot be created is named in the error, not the
// temporary file it would have been written under.
func TestOutputCreateErrorNamesTheOutput(t *testing.T) {
	p := basicCapture(t)
	out := filepath.Join(t.TempDir(), "missing", "x.pcap")
	r := runCLI(t, nil, "extract", p, "-w", out, "flow", "1")
	if r.code != 1 || !strings.Contains(r.stderr, "create "+out+":") || strings.Contains(r.stderr, ".tmp") {
		t.Errorf("%+v", r)
	}
}
