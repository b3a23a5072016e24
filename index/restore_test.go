package index_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// The live flows of the last commit are read back on another goroutine
// while the table takes them (builder.restore). When what the commit
// holds of them is damaged, adding a capture ends in an error naming the
// index, not a hang, a panic or a commit, and the index still answers
// what it answered; undamaged, the same add matches a scan.
func TestRestoreDamaged(t *testing.T) {
	// Enough live flows at the first file's end for several batches of
	// restored flows.
	c := capgen.Mix(capgen.MixOptions{Seed: 11, Bytes: 12 << 20, Active: 4000, MeanPackets: 6})
	paths := writeParts(t, c, []int{len(c.Packets) / 2}, false)
	// firstFile indexes the first file, whose commit leaves the live
	// flows that the add of the second restores.
	firstFile := func(t *testing.T) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "idx")
		res, err := index.Build(context.Background(), dir, paths[:1], index.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Live < 2*1024 {
			t.Fatalf("%d live flows at the commit: too few to test batches", res.Live)
		}
		return dir
	}
	t.Run("undamaged", func(t *testing.T) {
		s := build(t, firstFile(t), paths...)
		if d := diffLines(flowsOf(t, s), flowsOf(t, scanOf(t, paths...))); d != "" {
			t.Errorf("the index and a scan differ:\n%s", d)
		}
	})
	for _, what := range []string{"records", "tails", "state", "state-end"} {
		t.Run(what, func(t *testing.T) {
			dir := firstFile(t)
			if err := index.DamageLive(dir, what); err != nil {
				t.Fatal(err)
			}
			// A damaged block or group is refused by readers as well: the
			// index answers nothing wrong either way.
			before := answersOrErr(dir)
			for run := 0; run < 2; run++ {
				err := buildWith(t, dir, paths, &faults{n: -1}, 0)
				if err == nil {
					t.Fatalf("run %d: a damaged live state was taken", run)
				}
				t.Logf("run %d: %v", run, err)
				if !strings.Contains(err.Error(), dir) {
					t.Errorf("the error does not name the index: %v", err)
				}
			}
			if after := answersOrErr(dir); after != before {
				t.Errorf("the failed adds changed what the index answers: %.200s, then %.200s", before, after)
			}
		})
	}
}

// answersOrErr is every flow's ID and counters, or the error a reader
// of dir meets.
func answersOrErr(dir string) string {
	s, err := index.Open(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	defer s.Close()
	var b strings.Builder
	err = s.Flows(context.Background(), nil, func(f *flow.Flow) error {
		fmt.Fprintf(&b, "%d %d %d %s\n", f.ID, f.Packets, f.Bytes, f.History)
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return b.String()
}
