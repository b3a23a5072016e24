package index_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/sstable/block"

	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// A fresh index is compacted by its own commit, even where Pebble had
// compacted some of its tables during the run: the run does not leave
// that to Pebble, which would compact after the commit's last flush, on
// Close's time (or not at all, short of its threshold). A later add
// leaves its few tables to Pebble.
func TestFreshIndexCompacted(t *testing.T) {
	c := capgen.Mix(capgen.MixOptions{Seed: 5, Bytes: 24 << 20, Active: 3000, MeanPackets: 6})
	paths := writeParts(t, c, []int{len(c.Packets) * 9 / 10}, false)
	// Many flushes, as a large capture's run makes: Pebble compacts
	// some of them during the run.
	w := writerWith(t, filepath.Join(t.TempDir(), "idx"), 8<<10)
	if _, err := w.Add(context.Background(), paths[:1]); err != nil {
		t.Fatal(err)
	}
	tables, compacting := w.Levels()
	t.Logf("after the first run: tables by level %v, %d compacting", tables, compacting)
	// What is left in level 0 is the commit's own last flush.
	if compacting != 0 || tables[0] > 1 || tables[6] == 0 {
		t.Errorf("a fresh index left to Pebble: tables by level %v, %d compacting", tables, compacting)
	}
	if _, err := w.Add(context.Background(), paths[1:]); err != nil {
		t.Fatal(err)
	}
	tables2, compacting2 := w.Levels()
	t.Logf("after the second run: tables by level %v, %d compacting", tables2, compacting2)
}

// A fresh index's first run writes its level-0 tables raw, since its
// commit compacts them; none is left raw by a run that commits, nor by
// one that failed, once a run has committed after it. A later add, which
// its commit may not compact, compresses its flushes.
func TestRawFlushesCompacted(t *testing.T) {
	c := capgen.Mix(capgen.MixOptions{Seed: 6, Bytes: 8 << 20, Active: 2000, MeanPackets: 6})
	paths := writeParts(t, c, []int{len(c.Packets) / 2}, false)
	check := func(t *testing.T, w *index.Writer, wantWrote bool) {
		t.Helper()
		byName, wrote, err := w.Compressions()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tables by compression %v, wrote raw %v", byName, wrote)
		if wrote != wantWrote {
			t.Errorf("wrote a raw level-0 table: %v, want %v", wrote, wantWrote)
		}
		if n := byName[block.NoCompression.Name]; n > 0 {
			t.Errorf("%d tables left raw", n)
		}
		if len(byName) == 0 {
			t.Error("no tables")
		}
	}
	same := func(t *testing.T, w *index.Writer, paths []string) {
		t.Helper()
		s, err := w.Reader()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if d := diffLines(flowsOf(t, s), flowsOf(t, scanOf(t, paths...))); d != "" {
			t.Errorf("the index and a scan differ:\n%s", d)
		}
	}
	const memtable = 16 << 10 // many flushes in the pass
	t.Run("committed", func(t *testing.T) {
		w := writerWith(t, filepath.Join(t.TempDir(), "idx"), memtable)
		if _, err := w.Add(context.Background(), paths[:1]); err != nil {
			t.Fatal(err)
		}
		check(t, w, true)
		same(t, w, paths[:1])
		// The second run's flushes are compressed: the tables it leaves
		// in level 0 stay there.
		before, _, _ := w.Compressions()
		if _, err := w.Add(context.Background(), paths[1:]); err != nil {
			t.Fatal(err)
		}
		check(t, w, true)
		if after, _, _ := w.Compressions(); len(after) == 0 || sum(after) <= sum(before) {
			t.Errorf("the second run added no tables (%v, then %v): nothing was tested", before, after)
		}
		same(t, w, paths)
	})
	t.Run("after a failed run", func(t *testing.T) {
		// The directory exists, so that the failed run's writer does not
		// remove it: its raw tables stay for the next run.
		dir := filepath.Join(t.TempDir(), "idx")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		clean := &faults{n: -1}
		if err := buildWith(t, filepath.Join(t.TempDir(), "count"), paths[:1], clean, memtable); err != nil {
			t.Fatal(err)
		}
		f := &faults{n: clean.seen.Load() / 2, sticky: true}
		if err := buildWith(t, dir, paths[:1], f, memtable); err == nil {
			t.Fatalf("%v: the run did not fail", f)
		}
		w := writerWith(t, dir, memtable)
		if left, _, err := w.Compressions(); err != nil || left[block.NoCompression.Name] == 0 {
			t.Fatalf("%v: the failed run left tables %v (%v), none raw: nothing to test", f, left, err)
		}
		if _, err := w.Add(context.Background(), paths[:1]); err != nil {
			t.Fatal(err)
		}
		check(t, w, true)
		same(t, w, paths[:1])
	})
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// writerWith opens a writer of dir whose store flushes its memtable
// every memtable bytes; the test closes it.
func writerWith(t *testing.T, dir string, memtable int) *index.Writer {
	t.Helper()
	var o index.Options
	index.SetMemTable(&o, memtable)
	w, err := index.OpenWriter(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}
