package index_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// faults fails the store's writes: from the nth on (a disk that filled
// up: ENOSPC) or only the nth (a transient EIO). It counts the writes it
// sees, so a run without faults (n < 0) tells how many there are.
type faults struct {
	n      int64
	sticky bool
	seen   atomic.Int64
}

func (f *faults) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate, errorfs.OpFileSync,
		errorfs.OpFileSyncData, errorfs.OpFileSyncTo, errorfs.OpFileFlush, errorfs.OpCreate,
		errorfs.OpRename, errorfs.OpLink, errorfs.OpMkdirAll:
	default:
		return nil // closing and removing work on a full disk
	}
	if op.Kind == errorfs.OpFileSync {
		if st, err := os.Stat(op.Path); err == nil && st.IsDir() {
			// Pebble panics, by design, when it cannot sync its directory
			// (it can no longer know what is durable): the process dies as
			// if killed, which TestKilledIngest covers. A full disk does
			// not fail a directory sync.
			return nil
		}
	}
	i := f.seen.Add(1) - 1
	switch {
	case f.n < 0 || i < f.n:
		return nil
	case f.sticky:
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
	case i == f.n:
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.EIO}
	}
	return nil
}

func (f *faults) String() string { return fmt.Sprintf("fail write %d (sticky %v)", f.n, f.sticky) }

// buildWith runs Build through a faulty file system and fails the test if
// it does not return: a hang is the bug this test exists for. (The bound
// is a hang detector, far above what a run takes.)
func buildWith(t *testing.T, dir string, paths []string, f *faults, memtable int) error {
	t.Helper()
	var o index.Options
	index.SetFS(&o, errorfs.Wrap(vfs.Default, f))
	index.SetMemTable(&o, memtable)
	done := make(chan error, 1)
	go func() {
		_, err := index.Build(context.Background(), dir, paths, o)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Minute):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%v: Build did not return:\n%s", f, buf)
	}
	return nil
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// answers is what an index says: every flow and every flow's packets;
// "absent" when there is no index to open.
func answers(t *testing.T, dir string) string {
	t.Helper()
	s, err := index.Open(dir)
	if err != nil {
		return "absent: " + err.Error()
	}
	defer s.Close()
	return string(jsonOf(t, s)) + fmt.Sprint(packets(t, s))
}

// Every write of an index build and of an add fails in turn, as a full
// disk (that write and all after it) and as a transient I/O error (that
// write alone). Each run ends, with success or an error naming the store,
// and the index afterwards answers exactly the old archive or the new one,
// never anything between; a run without faults then completes it.
func TestWriteFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: hundreds of index runs")
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		memtable int
	}{
		{"small", capgen.Files()[0].Make(), 0},
		// Enough flows for the store to flush its 64 KiB memtable many
		// times while the captures are read: the writes that stall.
		{"flushing", mixPcap(t, capgen.MixOptions{Seed: 9, Bytes: 6 << 20, Active: 500, MeanPackets: 4}), 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) { writeFaults(t, tc.data, tc.memtable) })
	}
}

func mixPcap(t *testing.T, o capgen.MixOptions) []byte {
	var b bytes.Buffer
	if err := capgen.Mix(o).WritePcap(&b, capgen.PcapOptions{Nanos: true}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFaults(t *testing.T, data []byte, memtable int) {
	paths := shiftedCopies(t, data, 2, 20*time.Second) // the second continues the first's flows
	ref := t.TempDir()
	old := filepath.Join(ref, "old")
	build(t, old, paths[0]).Close()
	full := filepath.Join(ref, "new")
	build(t, full, paths...).Close()
	oldAns, newAns := answers(t, old), answers(t, full)
	if oldAns == newAns {
		t.Fatal("the add changes nothing: the test would prove nothing")
	}

	for _, tc := range []struct {
		name  string
		base  string // the index before the run; "" for a new one
		paths []string
	}{
		{"build", "", paths},
		{"add", old, paths[1:]},
	} {
		// How many writes does the run make?
		count := &faults{n: -1}
		dir := filepath.Join(t.TempDir(), "idx")
		if tc.base != "" {
			copyDir(t, tc.base, dir)
		}
		if err := buildWith(t, dir, tc.paths, count, memtable); err != nil {
			t.Fatal(err)
		}
		writes := count.seen.Load()
		if writes < 10 {
			t.Fatalf("%s: only %d writes counted: the injector sees nothing", tc.name, writes)
		}
		want := []string{newAns, oldAns}
		if tc.base == "" {
			want = []string{newAns}
		}
		step := max(1, writes/25)
		if raceEnabled {
			step = max(1, writes/8)
		}
		failed := 0
		for n := int64(0); n < writes; n += step {
			for _, sticky := range []bool{true, false} {
				f := &faults{n: n, sticky: sticky}
				dir := filepath.Join(t.TempDir(), "idx")
				if tc.base != "" {
					copyDir(t, tc.base, dir)
				}
				t0 := time.Now()
				err := buildWith(t, dir, tc.paths, f, memtable)
				if d := time.Since(t0); d > time.Second {
					t.Logf("%s %v: %v (%v)", tc.name, f, d, err)
				}
				if err != nil {
					failed++
					if !strings.Contains(err.Error(), dir) {
						t.Errorf("%s %v: the error does not name the index: %v", tc.name, f, err)
					}
					if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EIO) && !errors.Is(err, index.ErrStore) {
						t.Errorf("%s %v: the error hides its cause: %v", tc.name, f, err)
					}
				}
				got := answers(t, dir)
				ok := strings.HasPrefix(got, "absent") && tc.base == "" && err != nil
				for _, w := range want {
					ok = ok || got == w
				}
				if !ok {
					t.Fatalf("%s %v (err %v): the index answers neither the old nor the new archive", tc.name, f, err)
				}
				// Without faults, the next run completes the archive.
				if _, err := index.Build(context.Background(), dir, tc.paths, index.Options{}); err != nil {
					t.Fatalf("%s %v: the run after the fault: %v", tc.name, f, err)
				}
				if got := answers(t, dir); got != newAns {
					t.Fatalf("%s %v: after a run without faults the index is not the new archive", tc.name, f)
				}
			}
		}
		if failed == 0 {
			t.Errorf("%s: no injected fault made a run fail", tc.name)
		}
		t.Logf("%s: %d writes, %d runs failed", tc.name, writes, failed)
	}
}
