package index

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"

	"github.com/pcapflow/pcapflow/pcapio"
)

// capturePather is implemented by readers that can locate their captures
// for reading records (both Store and Mem).
type capturePather interface {
	CapturePath(i int) (string, error)
}

// batchPackets is implemented by readers that can list many flows'
// records at once (Store).
type batchPackets interface {
	PacketsOf(ctx context.Context, ids []uint64, fn func(id uint64, refs []PacketRef) error) error
}

// flowRef is one record of a selected flow: 16 bytes, as selecting every
// flow of a capture holds one per packet (8.8 M for a 2 GB capture).
type flowRef struct {
	Offset int64
	Length int32
	Flow   uint32 // the flow's ID minus its capture's first flow ID
}

// RecordFunc receives records in capture order. rec.Data and rec.Raw are
// valid only during the call.
type RecordFunc func(capture int, flow uint64, rec *pcapio.Record) error

// Records calls fn for every record of the flows ids (ascending), in
// capture order: file order within a capture, and across captures merged
// by timestamp (ties keep capture order). Only those records are read,
// by offset; a compressed capture is decompressed up to its last wanted
// record instead.
func Records(ctx context.Context, r Reader, ids []uint64, fn RecordFunc) error {
	caps := r.Captures()
	per := make([][]flowRef, len(caps))
	// Room for each capture's share of packets, in proportion to the
	// share of its flows selected: selecting most flows of a large
	// capture otherwise spends a second in growing the list.
	selected := make([]uint64, len(caps))
	for _, id := range ids {
		if ci := captureOf(caps, id); ci >= 0 {
			selected[ci]++
		}
	}
	for ci, n := range selected {
		if c := &caps[ci]; n > 0 && c.Flows > 0 {
			est := float64(c.Packets) * float64(n) / float64(c.Flows) * 1.1
			per[ci] = make([]flowRef, 0, int(min(est, float64(c.Packets))))
		}
	}
	add := func(id uint64, refs []PacketRef) error {
		ci := captureOf(caps, id)
		if ci < 0 {
			return fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
		rel := id - caps[ci].FirstID
		if rel > math.MaxUint32 {
			return fmt.Errorf("flow %d: more than 2^32 flows in one capture", id)
		}
		for _, p := range refs {
			per[ci] = append(per[ci], flowRef{p.Offset, p.Length, uint32(rel)})
		}
		return nil
	}
	if bp, ok := r.(batchPackets); ok {
		if err := bp.PacketsOf(ctx, ids, add); err != nil {
			return err
		}
	} else {
		var refs []PacketRef
		for _, id := range ids {
			var err error
			if refs, err = r.Packets(id, refs[:0]); err != nil {
				return err
			}
			if err := add(id, refs); err != nil {
				return err
			}
		}
	}
	cp, ok := r.(capturePather)
	if !ok {
		return errors.New("this index cannot locate its captures")
	}
	var curs []*cursor
	defer func() {
		for _, c := range curs {
			c.close()
		}
	}()
	for ci, list := range per {
		if len(list) == 0 {
			continue
		}
		sortByOffset(list)
		path, err := cp.CapturePath(ci)
		if err != nil {
			return err
		}
		c, err := newCursor(path, &caps[ci], ci, list)
		if err != nil {
			return err
		}
		curs = append(curs, c)
	}
	h := &cursorHeap{}
	for _, c := range curs {
		ok, err := c.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Push(h, c)
		}
	}
	n := 0
	for h.Len() > 0 {
		if n++; n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		c := (*h)[0]
		if err := fn(c.capture, c.firstID+uint64(c.refs[c.pos-1].Flow), &c.rec); err != nil {
			return err
		}
		ok, err := c.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return nil
}

// captureOf returns the index of the capture holding flow id.
func captureOf(caps []CaptureInfo, id uint64) int {
	i := sort.Search(len(caps), func(i int) bool { return caps[i].FirstID+caps[i].Flows > id })
	if i == len(caps) || id < caps[i].FirstID {
		return -1
	}
	return i
}

// cursor walks the wanted records of one capture.
type cursor struct {
	capture int
	firstID uint64
	refs    []flowRef
	pos     int
	rec     pcapio.Record
	file    *os.File
	rr      *pcapio.RecordReader // plain captures: random access
	seq     *pcapio.Reader       // compressed captures: sequential
	name    string
}

func newCursor(path string, info *CaptureInfo, ci int, refs []flowRef) (*cursor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	c := &cursor{capture: ci, firstID: info.FirstID, refs: refs, file: f, name: path}
	if info.Compression != "" {
		c.seq, err = pcapio.NewReader(f, path)
		if err != nil {
			f.Close()
			return nil, err
		}
	} else {
		c.rr = pcapio.NewRecordReader(newWindowReader(f), path, &info.Layout)
	}
	return c, nil
}

func (c *cursor) close() {
	if c.seq != nil {
		c.seq.Close()
	}
	c.file.Close()
}

// next reads the next wanted record; false at the end.
func (c *cursor) next() (bool, error) {
	if c.pos >= len(c.refs) {
		return false, nil
	}
	ref := c.refs[c.pos]
	c.pos++
	if c.rr != nil {
		return true, c.rr.ReadRecord(ref.Offset, int(ref.Length), &c.rec)
	}
	for {
		if err := c.seq.Next(&c.rec); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%s: no record at offset %d (capture shorter than indexed)", c.name, ref.Offset)
			}
			return false, err
		}
		if c.rec.Offset == ref.Offset {
			return true, nil
		}
		if c.rec.Offset > ref.Offset {
			return false, fmt.Errorf("%s: no record starts at offset %d", c.name, ref.Offset)
		}
	}
}

type cursorHeap []*cursor

func (h cursorHeap) Len() int { return len(h) }
func (h cursorHeap) Less(i, j int) bool {
	if h[i].rec.Timestamp != h[j].rec.Timestamp {
		return h[i].rec.Timestamp < h[j].rec.Timestamp
	}
	return h[i].capture < h[j].capture
}
func (h cursorHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)   { *h = append(*h, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// windowReader serves ReadAt from a cached window of the file, so that
// reading the records of a flow, which cluster, costs one system call
// per window rather than one per record.
type windowReader struct {
	f     io.ReaderAt
	buf   []byte
	start int64
	n     int
}

const windowSize = 256 << 10

func newWindowReader(f io.ReaderAt) *windowReader { return &windowReader{f: f, start: -1} }

func (w *windowReader) ReadAt(p []byte, off int64) (int, error) {
	if w.start >= 0 && off >= w.start && off+int64(len(p)) <= w.start+int64(w.n) {
		return copy(p, w.buf[off-w.start:]), nil
	}
	if len(p) > windowSize/2 {
		return w.f.ReadAt(p, off)
	}
	if w.buf == nil {
		w.buf = make([]byte, windowSize)
	}
	n, err := w.f.ReadAt(w.buf, off)
	w.start, w.n = off, n
	if n >= len(p) {
		return copy(p, w.buf[:n]), nil
	}
	copy(p, w.buf[:n])
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Layouts returns the layouts of the captures, for an output Copier.
func Layouts(r Reader) []*pcapio.Layout {
	caps := r.Captures()
	out := make([]*pcapio.Layout, len(caps))
	for i := range caps {
		out[i] = &caps[i].Layout
	}
	return out
}

// Extract writes the records of flows ids to cp (see Records for the
// order) and returns how many it wrote. A record that belongs to several
// of the flows (a tunnelled frame is in its tunnel's flow and in the flow
// it carries) is written once.
func Extract(ctx context.Context, r Reader, ids []uint64, cp *pcapio.Copier) (int64, error) {
	var n int64
	lastCap, lastOff := -1, int64(-1)
	err := Records(ctx, r, ids, func(ci int, _ uint64, rec *pcapio.Record) error {
		// Records of one capture come in offset order, so the copies of a
		// record shared by several flows are adjacent.
		if ci == lastCap && rec.Offset == lastOff {
			return nil
		}
		lastCap, lastOff = ci, rec.Offset
		n++
		return cp.Write(ci, rec)
	})
	if err != nil {
		return n, err
	}
	return n, cp.Finish()
}

// sortedIDs reports whether ids ascend (a precondition of Flows).
func sortedIDs(ids []uint64) bool { return slices.IsSorted(ids) }

// sortByOffset puts refs in capture order. Long lists, which selecting
// most flows of a capture gives (8.8 M refs for a 2 GB one), are radix
// sorted on the offset, 11 bits a pass (three passes for a capture under
// 8 GB): 0.5 s where a comparison sort took 0.9 s, most of it now the
// page faults of the scratch list. Offsets
// are unique within a capture, so stability does not matter.
func sortByOffset(refs []flowRef) {
	if len(refs) < 1<<16 {
		slices.SortFunc(refs, func(a, b flowRef) int { return cmp.Compare(a.Offset, b.Offset) })
		return
	}
	var hi int64
	for i := range refs {
		hi = max(hi, refs[i].Offset)
	}
	src, dst := refs, make([]flowRef, len(refs))
	const bits = 11 // 2048 write positions stay in the cache
	var count [1 << bits]int
	for shift := uint(0); shift < 64 && hi>>shift > 0; shift += bits {
		clear(count[:])
		for i := range src {
			count[(src[i].Offset>>shift)&(1<<bits-1)]++
		}
		pos := 0
		for d, c := range count {
			count[d] = pos
			pos += c
		}
		for i := range src {
			d := (src[i].Offset >> shift) & (1<<bits - 1)
			dst[count[d]] = src[i]
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &refs[0] {
		copy(refs, src)
	}
}
