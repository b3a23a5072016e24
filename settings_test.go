package pcapflow_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/pcapflow/pcapflow"
)

// An archive says which flow settings it was read with, defaults written
// out: a scan as asked, an index as it records them.
func TestArchiveSettings(t *testing.T) {
	ctx := context.Background()
	capture := filepath.Join("testdata", "basic.pcap")
	idx := filepath.Join(t.TempDir(), "x.pfidx")
	if _, err := pcapflow.Index(ctx, idx, []string{capture}, &pcapflow.IndexOptions{Settings: pcapflow.Settings{CloseTimeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		open       func() (*pcapflow.Archive, error)
		idle, wait time.Duration
	}{
		{"scan, defaults", func() (*pcapflow.Archive, error) { return pcapflow.Scan(ctx, []string{capture}, nil) }, pcapflow.DefaultIdleTimeout, pcapflow.DefaultCloseTimeout},
		{"scan, never idle", func() (*pcapflow.Archive, error) {
			return pcapflow.Scan(ctx, []string{capture}, &pcapflow.ScanOptions{Settings: pcapflow.Settings{IdleTimeout: -1}})
		}, -1, pcapflow.DefaultCloseTimeout},
		{"index, close timeout 1m", func() (*pcapflow.Archive, error) { return pcapflow.Open(idx) }, pcapflow.DefaultIdleTimeout, time.Minute},
	} {
		a, err := tc.open()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := a.Settings()
		a.Close()
		if got.IdleTimeout != tc.idle || got.CloseTimeout != tc.wait {
			t.Errorf("%s: idle %v, close %v; want %v, %v", tc.name, got.IdleTimeout, got.CloseTimeout, tc.idle, tc.wait)
		}
	}
}
