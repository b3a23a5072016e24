package index_test

import (
	"context"
	"path/filepath"
	"testing"

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
	var o index.Options
	// Many flushes, as a large capture's run makes: Pebble compacts
	// some of them during the run.
	index.SetMemTable(&o, 8<<10)
	w, err := index.OpenWriter(filepath.Join(t.TempDir(), "idx"), o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
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
