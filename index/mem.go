package index

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/pcapflow/pcapflow/flow"
)

// Mem is an index held in memory: what scan mode builds from one pass
// over the captures. It keeps every flow's record (about 270 bytes) and,
// when packets are kept, its postings (about a byte per packet) and the
// captures' checkpoints.
type Mem struct {
	captures []CaptureInfo
	flows    [][]flow.Flow // by ID-1, in chunks
	nflows   uint64
	keep     bool
	posts    map[uint64]*memPosting
	inCap    map[int][]uint64
	ckpts    map[int][][]int64
	spools   map[int]string // capture index -> temporary copy of standard input
}

type memPosting struct {
	chunks [][]byte
	tail   []byte
}

// ScanOptions configure Scan.
type ScanOptions struct {
	Options
	// KeepPackets records every flow's packets, for extraction.
	KeepPackets bool
}

const memChunkBits = 12

// Scan reads the captures (in time order, see Build) and indexes them in
// memory. Every capture that can be read is read, even after one that
// cannot; the error then lists the ones that failed, and the index holds
// everything that was read.
func Scan(ctx context.Context, paths []string, opts ScanOptions) (*Mem, error) {
	m := &Mem{keep: opts.KeepPackets, inCap: map[int][]uint64{}, ckpts: map[int][][]int64{}}
	if m.keep {
		m.posts = map[uint64]*memPosting{}
	}
	disc, err := Discover(paths)
	if err != nil {
		return m, err
	}
	paths = disc.Captures
	nstdin := 0
	for _, p := range paths {
		if p == "-" {
			nstdin++
		}
	}
	if nstdin > 1 {
		return m, fmt.Errorf("standard input (-) can be read only once")
	}
	stdin := opts.stdin()
	if nstdin == 1 && m.keep {
		// Standard input cannot be read twice: keep a copy to extract from.
		tmp, err := os.CreateTemp("", "pcapflow-stdin-*.pcap")
		if err != nil {
			return m, err
		}
		defer tmp.Close()
		m.spools = map[int]string{-1: tmp.Name()}
		stdin = io.TeeReader(stdin, tmp)
	}
	srcs, stdin, errs := order(paths, stdin)
	g := newIngest(&opts.Options, m, 1)
	err = g.read(ctx, srcs, stdin, 0)
	g.t.Finish()
	if err == nil {
		err = g.werr
	}
	if p, ok := m.spools[-1]; ok {
		delete(m.spools, -1)
		for i, c := range m.captures {
			if c.Path == "-" {
				m.spools[i] = p
			}
		}
	}
	errs = append(errs, g.errs...)
	if err == nil && len(errs) > 0 {
		err = joinCaptureErrors(errs)
	}
	return m, err
}

// CaptureErrors lists the captures that could not be read, or read only
// in part; each error names the file and the byte offset.
type CaptureErrors []error

func (e CaptureErrors) Error() string {
	if len(e) == 1 {
		return e[0].Error()
	}
	return fmt.Sprintf("%v (and %d more captures that could not be read)", e[0], len(e)-1)
}

func (e CaptureErrors) Unwrap() []error { return e }

func joinCaptureErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return CaptureErrors(errs)
}

func (m *Mem) started(*flow.Flow, PacketRef) error { return nil }

func (m *Mem) chunk(id uint64, n uint32, b []byte) error {
	if m.keep {
		p := m.posting(id)
		p.chunks = append(p.chunks, slices.Clone(b))
	}
	return nil
}

func (m *Mem) posting(id uint64) *memPosting {
	p := m.posts[id]
	if p == nil {
		p = &memPosting{}
		m.posts[id] = p
	}
	return p
}

func (m *Mem) ended(flows []endedFlow) error {
	for _, e := range flows {
		f := e.f
		i := f.ID - 1
		for i>>memChunkBits >= uint64(len(m.flows)) {
			m.flows = append(m.flows, make([]flow.Flow, 1<<memChunkBits))
		}
		m.flows[i>>memChunkBits][i&(1<<memChunkBits-1)] = *f
		m.nflows = max(m.nflows, f.ID)
		if m.keep {
			m.posting(f.ID).tail = e.post.appendChunk(nil, PacketRef{})
		}
	}
	return nil
}

func (m *Mem) inCapture(id uint64, ci int) { m.inCap[ci] = append(m.inCap[ci], id) }

// resumePoint drops gzip checkpoints: a scan reads each capture once,
// and keeping their windows would cost 0.4% of the captures in memory.
func (m *Mem) resumePoint(int, int64, []byte) error { return nil }

func (m *Mem) checkpoints(ci, n int, offs []int64) error {
	m.ckpts[ci] = append(m.ckpts[ci], slices.Clone(offs))
	return nil
}

func (m *Mem) capture(ci int, info *CaptureInfo) error {
	for len(m.captures) <= ci {
		m.captures = append(m.captures, CaptureInfo{})
	}
	m.captures[ci] = *info
	return nil
}

func (m *Mem) Captures() []CaptureInfo { return m.captures }
func (m *Mem) NumFlows() uint64        { return m.nflows }
func (m *Mem) Indexed() bool           { return false }

// flow returns the record of flow id (1 <= id <= nflows).
func (m *Mem) flow(id uint64) *flow.Flow {
	i := id - 1
	return &m.flows[i>>memChunkBits][i&(1<<memChunkBits-1)]
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
		for id := uint64(1); id <= m.nflows; id++ {
			if id&1023 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := fn(m.flow(id)); err != nil {
				return err
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

// Estimate is NumFlows: every lookup reads every record.
func (m *Mem) Estimate(context.Context, Lookup) (uint64, error) { return m.nflows, nil }

func (m *Mem) InCapture(ctx context.Context, i int) ([]uint64, error) {
	ids := slices.Clone(m.inCap[i])
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

func (m *Mem) PacketsOf(ctx context.Context, ids []uint64, fn func(uint64, []PacketRef) error) error {
	if !m.keep {
		return fmt.Errorf("the packets of this scan were not kept")
	}
	var refs []PacketRef
	for _, id := range ids {
		if id == 0 || id > m.nflows {
			return fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
		refs = refs[:0]
		p := m.posts[id]
		var err error
		for _, c := range p.chunks {
			if refs, err = decodeChunk(c, PacketRef{}, refs); err != nil {
				return err
			}
		}
		if refs, err = decodeChunk(p.tail, PacketRef{}, refs); err != nil {
			return err
		}
		if err := fn(id, refs); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mem) Checkpoints(ctx context.Context, i, n int) ([]int64, error) {
	cs := m.ckpts[i]
	if n < 0 || n >= len(cs) {
		return nil, fmt.Errorf("capture %d: no checkpoint chunk %d", i, n)
	}
	return cs[n], nil
}
