package index

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pcapflow/pcapflow/flow"
)

// batchSize is how much a write batch collects before it is committed.
const batchSize = 16 << 20

// writer batches writes to the store.
type writer struct {
	db    *pebble.DB
	batch *pebble.Batch
	err   error // sticky: the first failed write
}

func (w *writer) commit() error {
	if w.err != nil {
		return w.err
	}
	if w.batch == nil || w.batch.Empty() {
		return nil
	}
	err := w.batch.Commit(pebble.NoSync)
	w.batch.Close()
	w.batch = nil
	if err != nil {
		w.err = err
	}
	return err
}

func (w *writer) set(k, v []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.batch == nil {
		w.batch = w.db.NewBatchWithSize(batchSize + batchSize/4)
	}
	if err := w.batch.Set(k, v, nil); err != nil {
		w.err = err
		return err
	}
	if w.batch.Len() > batchSize {
		return w.commit()
	}
	return nil
}

func (w *writer) delete(k []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.batch == nil {
		w.batch = w.db.NewBatch()
	}
	if err := w.batch.Delete(k, nil); err != nil {
		w.err = err
	}
	return w.err
}

func (w *writer) deleteRange(lo, hi []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.batch == nil {
		w.batch = w.db.NewBatch()
	}
	if err := w.batch.DeleteRange(lo, hi, nil); err != nil {
		w.err = err
	}
	return w.err
}

// sealLag is how many flows after a block's last one may start before
// the block is written without the flows of it still live (they are
// stored alone when they end, under L keys). It bounds what waits in
// memory: the records of the flows that ended within it, about 50 bytes
// each, 13 MB at most.
const sealLag = 1 << 18

// pendingBlock is a block of flow IDs some of whose flows are live: the
// ones that ended wait here, encoded, until the block is complete or
// sealed.
type pendingBlock struct {
	first uint64
	recs  [flowBlock][]byte // standalone encodings (see standalone) of ended flows
	ended int
}

// storeSink writes what an ingest produces into the store, as the flows'
// connections end: every write during a run is a new key, so that until
// the run commits the index answers what it answered before.
type storeSink struct {
	w         *writer
	gen       uint32 // this run
	base      uint64 // the first ID of this run
	pending   map[uint64]*pendingBlock
	queue     []uint64        // firsts of pending blocks, ascending (some may be gone)
	restoredG map[uint64]bool // blocks with provisional keys at the run's start
	restoredN map[uint64]bool // flows with an N key at the run's start
	start     *startAttrs
	end       *endAttrs
	inCap     map[int][]uint64
	caps      map[int]*CaptureInfo // read in this run
	created   uint64               // IDs below have started
	enc       blockEncoder
	dec       recordDecoder
	buf       []byte
}

func newStoreSink(w *writer, gen uint32, base uint64) *storeSink {
	return &storeSink{
		w: w, gen: gen, base: base, created: base,
		pending: map[uint64]*pendingBlock{}, restoredG: map[uint64]bool{}, restoredN: map[uint64]bool{},
		start: newStartAttrs(w, base), end: newEndAttrs(w, gen),
		inCap: map[int][]uint64{}, caps: map[int]*CaptureInfo{},
	}
}

// started records a flow that just started (flow.Options.OnStart).
func (s *storeSink) started(f *flow.Flow) error {
	s.created = f.ID + 1
	first := blockOf(f.ID)
	if s.pending[first] == nil {
		s.pending[first] = &pendingBlock{first: first}
		s.queue = append(s.queue, first)
	}
	if err := s.start.add(f); err != nil {
		return err
	}
	// Blocks well behind the flows starting now are written as they are.
	for len(s.queue) > 0 && s.queue[0]+flowBlock-1+sealLag < f.ID {
		first := s.queue[0]
		s.queue = s.queue[1:]
		if pb := s.pending[first]; pb != nil {
			if err := s.writeBlock(pb, tagFlows, tagTails, nil); err != nil {
				return err
			}
			delete(s.pending, first)
		}
	}
	return nil
}

func (s *storeSink) chunk(id uint64, n uint32, b []byte) error {
	return s.w.set(chunkKey{id, n}.encode(), b)
}

func (s *storeSink) ended(f *flow.Flow, chunks uint32, tail []byte) error {
	if err := s.end.add(f); err != nil {
		return err
	}
	rec := s.standalone(nil, f, chunks, tail)
	first := blockOf(f.ID)
	pb := s.pending[first]
	if pb == nil {
		// Its block was written without it: it is stored alone.
		return s.w.set(lateKey{tagLate, f.ID}.encode(), rec)
	}
	pb.recs[f.ID-first] = rec
	pb.ended++
	if pb.ended == flowBlock {
		delete(s.pending, first)
		return s.writeBlock(pb, tagFlows, tagTails, nil)
	}
	return nil
}

func (s *storeSink) inCapture(id uint64, ci int) { s.inCap[ci] = append(s.inCap[ci], id) }

func (s *storeSink) checkpoints(ci, n int, offs []int64) error {
	b := binary.AppendUvarint(nil, uint64(len(offs)))
	var prev int64
	for _, o := range offs {
		b = binary.AppendUvarint(b, uint64(o-prev))
		prev = o
	}
	return s.w.set(checkpointKey{uint32(ci), uint32(n)}.encode(), b)
}

func (s *storeSink) capture(ci int, info *CaptureInfo) error {
	info.Gen = s.gen
	c := *info
	s.caps[ci] = &c
	ids := s.inCap[ci]
	delete(s.inCap, ci)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for len(ids) > 0 {
		n := min(len(ids), maxListIDs)
		if err := s.w.set(inCaptureKey{uint32(ci), ids[0]}.encode(), appendIDs(nil, ids[0], ids[:n])); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// standalone encodes a flow's record and postings to be stored alone (L
// and N keys) or to wait in a pending block:
//
//	uvarint(len(record block)) record block (one flow, see record.go)
//	uvarint(full chunks) uvarint(len(tail)) tail
func (s *storeSink) standalone(dst []byte, f *flow.Flow, chunks uint32, tail []byte) []byte {
	s.enc.reset(f.ID)
	s.enc.add(f)
	s.buf = s.enc.bytes(s.buf[:0])
	dst = binary.AppendUvarint(dst, uint64(len(s.buf)))
	dst = append(dst, s.buf...)
	return appendTail(dst, chunks, tail)
}

func appendTail(dst []byte, chunks uint32, tail []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(chunks))
	dst = binary.AppendUvarint(dst, uint64(len(tail)))
	return append(dst, tail...)
}

// splitStandalone splits a standalone encoding into its record block,
// chunk count and tail.
func splitStandalone(b []byte) (rec []byte, chunks uint32, tail []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, 0, nil, fmt.Errorf("%w: standalone record", errCorrupt)
	}
	rec, b = b[k:k+int(n)], b[k+int(n):]
	chunks, tail, _, err = splitTail(b)
	return rec, chunks, tail, err
}

// splitTail reads one flow's chunk count and tail, returning the rest.
func splitTail(b []byte) (chunks uint32, tail, rest []byte, err error) {
	c, k := binary.Uvarint(b)
	if k <= 0 || c > 1<<31 {
		return 0, nil, nil, fmt.Errorf("%w: posting tail", errCorrupt)
	}
	b = b[k:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return 0, nil, nil, fmt.Errorf("%w: posting tail", errCorrupt)
	}
	return uint32(c), b[k : k+int(n)], b[k+int(n):], nil
}

// liveFlow is a flow live at a commit: its record as it stands and its
// postings so far.
type liveFlow struct {
	f      flow.Flow
	chunks uint32
	tail   []byte
}

// writeBlock writes block pb's flows: the ones that ended, and those of
// live (provisional blocks only). IDs of neither are holes: stored
// alone. recTag and tailTag are F and Q, or G and R.
func (s *storeSink) writeBlock(pb *pendingBlock, recTag, tailTag byte, live map[uint64]*liveFlow) error {
	s.enc.reset(pb.first)
	tails := []byte{0} // the holes mask, filled in below
	var f flow.Flow
	for i := uint64(0); i < flowBlock; i++ {
		id := pb.first + i
		if r := pb.recs[i]; r != nil {
			rec, chunks, tail, err := splitStandalone(r)
			if err != nil {
				return err
			}
			s.dec.start(rec, id)
			if err := s.dec.next(&f); err != nil {
				return fmt.Errorf("flow %d: %w", id, err)
			}
			s.enc.add(&f)
			tails = appendTail(tails, chunks, tail)
		} else if lf := live[id]; lf != nil {
			s.enc.add(&lf.f)
			tails = appendTail(tails, lf.chunks, lf.tail)
		} else if id < s.created {
			s.enc.hole(id)
		}
	}
	tails = append(binary.AppendUvarint(nil, s.enc.holes), tails[1:]...)
	s.buf = s.enc.bytes(s.buf[:0])
	if err := s.w.set(blockKey{recTag, pb.first}.encode(), s.buf); err != nil {
		return err
	}
	return s.w.set(blockKey{tailTag, pb.first}.encode(), tails)
}
