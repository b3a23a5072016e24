package index

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// restricted shows only the flows with packets in some captures of an
// index.
type restricted struct {
	Reader
	ids []uint64 // ascending
}

// Restrict limits r to the flows with packets in the named captures
// (matched by path or base name); it fails for a name the index does
// not hold.
func Restrict(ctx context.Context, r Reader, names []string) (Reader, error) {
	caps := r.Captures()
	var ids []uint64
	for _, n := range names {
		abs, _ := filepath.Abs(n)
		found := false
		for i, c := range caps {
			if c.Path == abs || c.Name == n || c.Path == n {
				found = true
				in, err := r.InCapture(ctx, i)
				if err != nil {
					return nil, err
				}
				ids = append(ids, in...)
			}
		}
		if !found {
			return nil, fmt.Errorf("capture %s is not in the index", n)
		}
	}
	slices.Sort(ids)
	return &restricted{Reader: r, ids: slices.Compact(ids)}, nil
}

func (r *restricted) filter(ids []uint64) []uint64 {
	out := make([]uint64, 0, min(len(ids), len(r.ids)))
	i, j := 0, 0
	for i < len(ids) && j < len(r.ids) {
		switch {
		case ids[i] < r.ids[j]:
			i++
		case ids[i] > r.ids[j]:
			j++
		default:
			out = append(out, ids[i])
			i++
			j++
		}
	}
	return out
}

func (r *restricted) Flows(ctx context.Context, ids []uint64, fn func(*flow.Flow) error) error {
	if ids == nil {
		ids = r.ids
	} else {
		ids = r.filter(ids)
	}
	if len(ids) == 0 {
		return nil
	}
	return r.Reader.Flows(ctx, ids, fn)
}

func (r *restricted) Lookup(ctx context.Context, l Lookup) ([]uint64, bool, error) {
	ids, exact, err := r.Reader.Lookup(ctx, l)
	return r.filter(ids), exact, err
}

func (r *restricted) PacketsOf(ctx context.Context, ids []uint64, fn func(uint64, []PacketRef) error) error {
	return r.Reader.PacketsOf(ctx, r.filter(ids), fn)
}

// ResumePoint passes gzip checkpoints through (resumePointer).
func (r *restricted) ResumePoint(ctx context.Context, i int, off int64) (pcapio.GzipCheckpoint, error) {
	if rp, ok := r.Reader.(resumePointer); ok {
		return rp.ResumePoint(ctx, i, off)
	}
	return pcapio.GzipCheckpoint{}, nil
}
