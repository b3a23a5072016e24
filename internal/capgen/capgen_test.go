package capgen

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The committed testdata/ captures are what the generator writes; run
// `go run ./internal/capgen/gentestdata` after changing it.
func TestTestdataUpToDate(t *testing.T) {
	for _, f := range Files() {
		got, err := os.ReadFile(filepath.Join("..", "..", "testdata", f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.Make()) {
			t.Errorf("testdata/%s differs from the generator's output; regenerate it", f.Name)
		}
		if !bytes.Equal(f.Make(), f.Make()) {
			t.Errorf("%s: the generator is not deterministic", f.Name)
		}
	}
}
