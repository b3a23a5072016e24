package index

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/pcapflow/pcapflow/flow"
)

// Mem is an index held in memory: what scan mode builds from one pass
// over the captures. Flow records take about 250 bytes each and, when
// packets are kept, posting lists about 5 bytes per packet.
type Mem struct {
	captures []CaptureInfo
	tables   []*flow.Table // per capture; capture i holds IDs captures[i].FirstID...
	nflows   uint64
	posts    []postingBuf   // per flow, nil unless packets are kept
	spools   map[int]string // capture index -> temporary copy of standard input
	slab     slab
}

// ScanOptions configure Scan.
type ScanOptions struct {
	Options
	// KeepPackets records every flow's packet offsets, for extraction.
	KeepPackets bool
}

// Scan reads the captures in order and indexes them in memory; flow IDs
// continue from one capture to the next. On a capture that cannot be
// read to its end it still returns the index of everything read so far,
// with the error.
func Scan(ctx context.Context, paths []string, opts ScanOptions) (*Mem, error) {
	m := &Mem{}
	for i, path := range paths {
		var sink packetSink
		base := int(m.nflows)
		if opts.KeepPackets {
			sink = func(fi int32, off int64, length int32) {
				for int(fi)+base >= len(m.posts) {
					m.posts = append(m.posts, postingBuf{})
				}
				m.posts[base+int(fi)].add(off, length, &m.slab)
			}
		}
		var src io.Reader
		if path == "-" && opts.KeepPackets {
			// Standard input cannot be read twice: keep a copy to extract from.
			tmp, err := os.CreateTemp("", "pcapflow-stdin-*.pcap")
			if err != nil {
				return m, err
			}
			if m.spools == nil {
				m.spools = map[int]string{}
			}
			m.spools[i] = tmp.Name()
			defer tmp.Close()
			src = io.TeeReader(opts.stdin(), tmp)
		}
		info, t, err := readCapture(ctx, path, src, i, m.nflows+1, &opts.Options, sink)
		if t != nil {
			m.tables = append(m.tables, t)
			m.nflows += uint64(t.Len())
			if opts.KeepPackets {
				for uint64(len(m.posts)) < m.nflows {
					m.posts = append(m.posts, postingBuf{})
				}
			}
			m.captures = append(m.captures, *info)
		}
		if err != nil {
			return m, err
		}
	}
	return m, nil
}

func (m *Mem) Captures() []CaptureInfo { return m.captures }
func (m *Mem) NumFlows() uint64        { return m.nflows }

// flow returns the record of flow id (1 <= id <= nflows).
func (m *Mem) flow(id uint64) *flow.Flow {
	ci := captureOf(m.captures, id)
	return m.tables[ci].Flow(int32(id - m.captures[ci].FirstID))
}

// Close removes the temporary copy of standard input, if any.
func (m *Mem) Close() error {
	for _, p := range m.spools {
		os.Remove(p)
	}
	m.spools = nil
	return nil
}

// CapturePath returns the file to read capture i's records from.
func (m *Mem) CapturePath(i int) (string, error) {
	if p, ok := m.spools[i]; ok {
		return p, nil
	}
	if m.captures[i].Path == "-" {
		return "", fmt.Errorf("standard input was not kept: packets cannot be read again")
	}
	return m.captures[i].Path, nil
}

func (m *Mem) Flows(ctx context.Context, ids []uint64, fn func(*flow.Flow) error) error {
	if ids == nil {
		for _, t := range m.tables {
			for i := 0; i < t.Len(); i++ {
				if i&1023 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				if err := fn(t.Flow(int32(i))); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for n, id := range ids {
		if id == 0 || id > m.nflows {
			return fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fn(m.flow(id)); err != nil {
			return err
		}
	}
	return nil
}

// Lookup filters every flow record: a scan has no attribute keys, so
// its lookups are exact but cost a pass over the flows.
func (m *Mem) Lookup(ctx context.Context, l Lookup) ([]uint64, bool, error) {
	var ids []uint64
	err := m.Flows(ctx, nil, func(f *flow.Flow) error {
		if l.Matches(f) {
			ids = append(ids, f.ID)
		}
		return nil
	})
	return ids, true, err
}

func (m *Mem) Packets(id uint64, out []PacketRef) ([]PacketRef, error) {
	if id == 0 || id > m.nflows {
		return out, fmt.Errorf("flow %d: %w", id, ErrNoFlow)
	}
	if m.posts == nil {
		return out, fmt.Errorf("flow %d: packet offsets were not kept by this scan", id)
	}
	p := &m.posts[id-1]
	start := len(out)
	var b []byte
	b = p.chunkCopy(b)
	out, err := decodeChunk(b, out)
	if err != nil {
		return out, err
	}
	sortRefs(out[start:])
	return out, nil
}

// sortRefs puts refs in capture order; they almost always are already.
func sortRefs(r []PacketRef) {
	if !sort.SliceIsSorted(r, func(i, j int) bool { return r[i].Offset < r[j].Offset }) {
		sort.Slice(r, func(i, j int) bool { return r[i].Offset < r[j].Offset })
	}
}
