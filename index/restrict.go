package index

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/pcapflow/pcapflow/flow"
)

// restricted shows only the flows of some captures of an index.
type restricted struct {
	Reader
	keep []bool // by capture index
}

// Restrict limits r to the flows of the named captures (matched by path
// or base name); it fails for a name the index does not hold.
func Restrict(r Reader, names []string) (Reader, error) {
	caps := r.Captures()
	keep := make([]bool, len(caps))
	for _, n := range names {
		abs, _ := filepath.Abs(n)
		found := false
		for i, c := range caps {
			if c.Path == abs || c.Name == n || c.Path == n {
				keep[i], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("capture %s is not in the index", n)
		}
	}
	return &restricted{Reader: r, keep: keep}, nil
}

func (r *restricted) allowed(id uint64) bool {
	ci := captureOf(r.Reader.Captures(), id)
	return ci >= 0 && r.keep[ci]
}

func (r *restricted) filter(ids []uint64) []uint64 {
	out := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if r.allowed(id) {
			out = append(out, id)
		}
	}
	return out
}

func (r *restricted) Flows(ctx context.Context, ids []uint64, fn func(*flow.Flow) error) error {
	if ids == nil {
		ids = []uint64{}
		for i, c := range r.Reader.Captures() {
			if r.keep[i] {
				for id := c.FirstID; id < c.FirstID+c.Flows; id++ {
					ids = append(ids, id)
				}
			}
		}
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

// Estimate passes through to the underlying index when it has one.
func (r *restricted) Estimate(ctx context.Context, l Lookup) (uint64, error) {
	if e, ok := r.Reader.(interface {
		Estimate(context.Context, Lookup) (uint64, error)
	}); ok {
		return e.Estimate(ctx, l)
	}
	return r.Reader.NumFlows(), nil
}

func (r *restricted) CapturePath(i int) (string, error) {
	return r.Reader.(capturePather).CapturePath(i)
}

// PacketsOf passes through to the underlying index when it has it.
func (r *restricted) PacketsOf(ctx context.Context, ids []uint64, fn func(uint64, []PacketRef) error) error {
	ids = r.filter(ids)
	if bp, ok := r.Reader.(batchPackets); ok {
		return bp.PacketsOf(ctx, ids, fn)
	}
	var refs []PacketRef
	for _, id := range ids {
		var err error
		if refs, err = r.Reader.Packets(id, refs[:0]); err != nil {
			return err
		}
		if err := fn(id, refs); err != nil {
			return err
		}
	}
	return nil
}
