package index_test

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// A Writer adds captures while readers it handed out keep answering the
// archive as it was when they were taken; a reader taken after an add
// answers exactly what Build of all the captures answers.
func TestWriterReadersSeeCommits(t *testing.T) {
	paths := shiftedCopies(t, capgen.Files()[0].Make(), 3, 20*time.Second)
	all := build(t, filepath.Join(t.TempDir(), "all"), paths...)
	dir := filepath.Join(t.TempDir(), "w")
	w, err := index.OpenWriter(dir, index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Reader(); err == nil {
		t.Fatal("a reader of an index with nothing committed")
	}
	ctx := context.Background()
	var readers []*index.Store
	var answers [][]byte
	for i, p := range paths {
		// Readers of earlier commits are queried while this add runs.
		var wg sync.WaitGroup
		for j, r := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 5; k++ {
					if got := jsonOf(t, r); !bytes.Equal(got, answers[j]) {
						t.Errorf("reader %d changed while capture %d was added", j, i)
						return
					}
				}
			}()
		}
		if _, err := w.Add(ctx, []string{p}); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		r, err := w.Reader()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
		answers = append(answers, jsonOf(t, r))
		if i > 0 && bytes.Equal(answers[i], answers[i-1]) {
			t.Fatalf("capture %d added nothing", i)
		}
	}
	if !bytes.Equal(answers[len(answers)-1], jsonOf(t, all)) {
		t.Fatal("the last reader differs from a build of all the captures")
	}
	if got, want := packets(t, readers[len(readers)-1]), packets(t, all); len(got) != len(want) {
		t.Fatalf("packets of %d flows, want %d", len(got), len(want))
	}
}
