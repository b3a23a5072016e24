package index

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/internal/varint"
)

// batchSize is how much a write batch collects before it is committed.
const batchSize = 4 << 20

// writer batches writes to the store.
type writer struct {
	db    *pebble.DB
	g     *guard
	batch *pebble.Batch
	err   error // sticky: the first failed write
	// whole keeps every write in one batch until commit is called: the
	// batch that commits an index run must be applied atomically.
	whole bool
	// limit replaces batchSize when it is smaller (tests with a small
	// memtable, so that a small capture's run flushes often).
	limit int
	// hint, when set, is the size the first batch is made with.
	hint int
	// ids is space for the IDs of a list being encoded (idList.emit),
	// which would otherwise be 30 MB of garbage on the 2 GB real capture.
	ids []uint64
	val []byte // space for a value: Batch.Set copies it
}

func (w *writer) size() int {
	if w.limit > 0 && w.limit < batchSize {
		return w.limit
	}
	return batchSize
}

func (w *writer) commit() error {
	if w.err != nil {
		return w.err
	}
	if w.batch == nil || w.batch.Empty() {
		return nil
	}
	b := w.batch
	w.batch = nil
	// The guard ends the wait if the store fails meanwhile.
	err := w.g.wait(func() error {
		err := b.Commit(pebble.NoSync)
		b.Close()
		return err
	})
	if err == nil {
		err = w.g.backpressure(w.db)
	}
	if err != nil {
		w.err = err
	}
	return err
}

// fail makes err the writer's sticky error, unless it has one.
func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// setIDs sets k to the list of ids (from first), encoded in the writer's
// value space.
func (w *writer) setIDs(k []byte, first uint64, ids []uint64) error {
	w.val = appendIDs(w.val[:0], first, ids)
	return w.set(k, w.val)
}

func (w *writer) set(k, v []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.batch == nil {
		w.batch = w.db.NewBatchWithSize(max(w.hint, w.size()+w.size()/4))
	}
	if err := w.batch.Set(k, v, nil); err != nil {
		w.err = err
		return err
	}
	if w.batch.Len() > w.size() && !w.whole {
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

// sealAfter is how long (capture time) after a block's first flow began
// the block is written without its flows still live: they are stored
// alone when they end (L keys). It is the time a closed connection
// lingers (Settings.CloseTimeout) plus sealLife, the life of most
// connections, so that few flows are stored alone, and it bounds what
// waits in memory: the entries of the flows that ended within it, about
// 30 bytes each.
func (s Settings) sealAfter() int64 {
	linger := s.closeAfter()
	if idle := s.idle(); idle > 0 {
		linger = min(linger, idle)
	}
	return int64(linger + sealLife)
}

// sealLife: with the default 5 s close timeout, blocks seal 7 s after
// they begin. The entries of ended flows waiting in unsealed blocks were
// the third largest thing in memory on the 2 GB real capture of the
// eleventh session (35 MB at the peak, sealing at 15 s); at 7 s the run
// peaks at 284 MB instead of 305 and takes 2.99 s instead of 3.24 (less
// to collect near the heap limit), for an index 0.06% larger: flows that
// outlive their sealed block are stored alone (N, L keys), about 30
// bytes each instead of 4 (six alternating runs; 1 s gained nothing more
// and stored 900 flows alone).
const sealLife = 2 * time.Second

// pendingBlock is a block of flow IDs some of whose flows are live: the
// entries of the ones that ended wait here until the block is complete
// or sealed.
type pendingBlock struct {
	first uint64
	base  blockBase
	ref   PacketRef // the first packet of the block's first flow: the tails' base
	recs  []byte    // entries, in the order their flows ended
	tails []byte
	// A block restored from provisional keys has their values: a commit
	// that would write them unchanged leaves them (adding a short file
	// to a long archive leaves most live flows as they were).
	prevRecs, prevTails []byte
	// changed is set when a flow of the block ends or starts after it
	// was restored; with no packet for its flows' connections either
	// (ingest.touched), its provisional values are what they were.
	changed bool
	rpos    [flowBlock]uint32 // offset<<16 | length in recs (0: none)
	tpos    [flowBlock]uint32
	ended   int
}

func (pb *pendingBlock) put(i uint64, rec, tail []byte) {
	pb.changed = true
	pb.rpos[i] = uint32(len(pb.recs))<<16 | uint32(len(rec))
	pb.recs = append(pb.recs, rec...)
	pb.tpos[i] = uint32(len(pb.tails))<<16 | uint32(len(tail))
	pb.tails = append(pb.tails, tail...)
	pb.ended++
}

func (pb *pendingBlock) has(i uint64) bool { return pb.rpos[i] != 0 }
func (pb *pendingBlock) rec(i uint64) []byte {
	return pb.recs[pb.rpos[i]>>16 : pb.rpos[i]>>16+pb.rpos[i]&0xffff]
}
func (pb *pendingBlock) tail(i uint64) []byte {
	return pb.tails[pb.tpos[i]>>16 : pb.tpos[i]>>16+pb.tpos[i]&0xffff]
}

// storeSink writes what an ingest produces into the store, as the flows'
// connections end: every write during a run is a new key, so that until
// the run commits the index answers what it answered before.
type storeSink struct {
	w           *writer
	gen         uint32 // this run
	base        uint64 // the first ID of this run
	sealAfter   int64  // Settings.sealAfter
	pending     map[uint64]*pendingBlock
	near        [1 << 12]*pendingBlock // pending, by block number mod 4096: see look
	blocks      blockScratch           // appendRecordBlock's space
	queue       []uint64               // firsts of pending blocks, ascending (some may be done)
	restoredG   map[uint64]bool        // blocks with provisional keys at the run's start
	restoredN   []restoredGroup        // the N groups at the run's start
	late        []heldLate             // flows that outlived their block, to be written (flushLate)
	lateRefs    []PacketRef            // their tails
	lateFlushAt int                    // lateFlush, or a test's
	lateN       uint32                 // groups written
	kept        int                    // provisional values not written again, being unchanged
	start       *startAttrs
	end         *endAttrs
	inCap       map[int]*idSet
	caps        map[int]*CaptureInfo // read in this run
	created     uint64               // IDs below have started
	free        []*pendingBlock
	rec, tail   []byte // scratch
	buf         []byte
	refs        []PacketRef
	dec         entryDecoder
	flows       [flowBlock]flow.Flow // appendLate's renumbered copies
	ptrs        []*flow.Flow
	tails       []tailOf
	arena       []PacketRef
}

func newStoreSink(w *writer, gen uint32, base uint64, set Settings) *storeSink {
	return &storeSink{
		w: w, gen: gen, base: base, created: base, sealAfter: set.sealAfter(),
		pending: map[uint64]*pendingBlock{}, restoredG: map[uint64]bool{},
		lateFlushAt: lateFlush,
		start:       newStartAttrs(w, base), end: newEndAttrs(w, gen),
		inCap: map[int]*idSet{}, caps: map[int]*CaptureInfo{},
	}
}

// look returns pending[first], from near when it is there: a map lookup
// for every flow that starts and ends was 0.11 s of the sink on the 2 GB
// real capture.
func (s *storeSink) look(first uint64) *pendingBlock {
	c := &s.near[(first/flowBlock)%uint64(len(s.near))]
	if pb := *c; pb != nil && pb.first == first {
		return pb
	}
	pb := s.pending[first]
	if pb != nil {
		*c = pb
	}
	return pb
}

// done removes pending block first.
func (s *storeSink) done(first uint64) {
	delete(s.pending, first)
	if c := &s.near[(first/flowBlock)%uint64(len(s.near))]; *c != nil && (*c).first == first {
		*c = nil
	}
}

// started records a flow that just started (flow.Options.OnStart).
func (s *storeSink) started(f *flow.Flow, first PacketRef) error {
	s.created = f.ID + 1
	bf := blockOf(f.ID)
	if pb := s.look(bf); pb != nil {
		pb.changed = true
	} else {
		pb := s.newBlock()
		pb.first, pb.base, pb.ref = bf, blockBase{f.First, f.Capture}, first
		s.pending[bf] = pb
		s.queue = append(s.queue, bf)
	}
	if err := s.start.add(f); err != nil {
		return err
	}
	// Blocks begun well before the flows starting now are written as
	// they are; their flows still live will be stored alone.
	for len(s.queue) > 1 {
		pb := s.look(s.queue[0])
		if pb == nil {
			s.queue = s.queue[1:] // done
			continue
		}
		if f.First-pb.base.time <= s.sealAfter || pb.first+flowBlock > s.created {
			break
		}
		s.queue = s.queue[1:]
		s.done(pb.first)
		if err := s.writeBlock(s.w, pb, tagFlows, tagTails, nil); err != nil {
			return err
		}
		s.release(pb)
	}
	return nil
}

func (s *storeSink) newBlock() *pendingBlock {
	if n := len(s.free); n > 0 {
		pb := s.free[n-1]
		s.free = s.free[:n-1]
		return pb
	}
	return &pendingBlock{}
}

func (s *storeSink) release(pb *pendingBlock) {
	recs, tails := pb.recs[:0], pb.tails[:0]
	*pb = pendingBlock{recs: recs, tails: tails}
	s.free = append(s.free, pb)
}

func (s *storeSink) chunk(id uint64, n uint32, b []byte) error {
	refs, err := decodeChunk(b, PacketRef{}, s.refs[:0])
	if err != nil {
		return err
	}
	s.refs = refs
	s.w.val = appendChunkBits(s.w.val[:0], refs)
	return s.w.set(chunkKey{id, n}.encode(), s.w.val)
}

func (s *storeSink) ended(flows []endedFlow) error {
	for _, e := range flows {
		if err := s.end.add(e.f); err != nil {
			return err
		}
	}
	var prev *flow.Flow
	var prevBlock uint64
	for _, e := range flows {
		f := e.f
		first := blockOf(f.ID)
		pb := s.look(first)
		if pb == nil {
			// Its block was written without it: it waits with the other
			// flows that outlived theirs (flushLate).
			if err := s.holdLate(e); err != nil {
				return err
			}
			continue
		}
		var peer *flow.Flow
		if prev != nil && prevBlock == first && prev.ID == f.Peer {
			peer = prev
		}
		s.rec = appendEntry(s.rec[:0], f, pb.base, peer)
		s.tail = appendTail(s.tail[:0], e.chunks, e.post.appendChunk(s.buf[:0], pb.ref))
		pb.put(f.ID-first, s.rec, s.tail)
		prev, prevBlock = f, first
		if pb.ended == flowBlock {
			s.done(first)
			if err := s.writeBlock(s.w, pb, tagFlows, tagTails, nil); err != nil {
				return err
			}
			s.release(pb)
		}
	}
	return nil
}

// Flows that outlive their block (written 7 s after it began without
// them) are stored in groups of up to 64 (L keys, lateGroupKey): stored
// alone, each took about 30 bytes on disk, against 4 in a block. They
// are the long flows, UDP ones above all (each lives out the idle
// timeout), few in most blocks, so a group gathers those of a span of
// lateSpan IDs that ended between two flushes; flows that start close
// together and live as long end close together, so they share a group
// whatever the flow rate.
const (
	lateFlush = 4096    // flows held before they are written
	lateSpan  = 1 << 12 // IDs a group's flows come from
)

// lateSpanOf is the first ID of the span that holds flow id.
func lateSpanOf(id uint64) uint64 { return (id-1)/lateSpan*lateSpan + 1 }

// lateVirtual is the first ID a group's record block is written with:
// its flows are numbered lateVirtual, lateVirtual+1, ... in ID order, a
// range no flow ID reaches, so that a peer or outer flow in the group is
// told from one outside it (kept as its real ID) after decoding.
const lateVirtual = 1 << 62

// heldLate is a flow stored late that waits for flushLate.
type heldLate struct {
	f          flow.Flow
	chunks     uint32
	start, end int // its tail's refs in lateRefs
}

// holdLate keeps an ended flow whose block was written, writing the
// held flows once there are lateFlushAt of them.
func (s *storeSink) holdLate(e endedFlow) error {
	start := len(s.lateRefs)
	s.lateRefs = e.post.appendRefs(s.lateRefs)
	s.late = append(s.late, heldLate{f: *e.f, chunks: e.chunks, start: start, end: len(s.lateRefs)})
	if len(s.late) >= s.lateFlushAt {
		return s.flushLate()
	}
	return nil
}

// flushLate writes the held flows, in groups of up to 64 of one span, in
// ID order.
func (s *storeSink) flushLate() error {
	slices.SortFunc(s.late, func(a, b heldLate) int { return cmp.Compare(a.f.ID, b.f.ID) })
	for i := 0; i < len(s.late); {
		span := lateSpanOf(s.late[i].f.ID)
		j := i + 1
		for j < len(s.late) && j-i < flowBlock && lateSpanOf(s.late[j].f.ID) == span {
			j++
		}
		if err := s.writeLate(span, s.late[i:j]); err != nil {
			return err
		}
		i = j
	}
	s.late, s.lateRefs = s.late[:0], s.lateRefs[:0]
	return nil
}

// writeLate writes a group of flows stored late, of span span:
//
//	uvarint(n) uvarint(first ID - span) uvarint(ID step)*(n-1)
//	uvarint(len(record block)) record block tail block
//
// the record block (recblock.go) written with the IDs lateVirtual.. and
// the tail block (tailblock.go) of its flows.
func (s *storeSink) writeLate(span uint64, group []heldLate) error {
	var err error
	if s.buf, err = s.appendLate(s.buf[:0], span, group, s.lateRefs); err != nil {
		return err
	}
	s.lateN++
	return s.w.set(lateGroupKey{tagLate, span, s.gen, s.lateN}.encode(), s.buf)
}

// appendLate encodes a group (see writeLate) whose tails are in refs.
func (s *storeSink) appendLate(dst []byte, span uint64, group []heldLate, refs []PacketRef) ([]byte, error) {
	virtual := func(id uint64) uint64 {
		if i, ok := slices.BinarySearchFunc(group, id, func(h heldLate, id uint64) int { return cmp.Compare(h.f.ID, id) }); ok {
			return lateVirtual + uint64(i)
		}
		return id
	}
	s.ptrs, s.tails = s.ptrs[:0], s.tails[:0]
	dst = binary.AppendUvarint(dst, uint64(len(group)))
	prev := span
	for i := range group {
		h := &group[i]
		dst = binary.AppendUvarint(dst, h.f.ID-prev)
		prev = h.f.ID
		f := &s.flows[i]
		*f = h.f
		f.ID = lateVirtual + uint64(i)
		if f.Peer != 0 {
			f.Peer = virtual(f.Peer)
		}
		if f.Outer != 0 {
			f.Outer = virtual(f.Outer)
		}
		s.ptrs = append(s.ptrs, f)
		s.tails = append(s.tails, tailOf{h.chunks, refs[h.start:h.end:h.end]})
	}
	s.rec = s.blocks.appendRecordBlock(s.rec[:0], lateVirtual, s.ptrs)
	dst = binary.AppendUvarint(dst, uint64(len(s.rec)))
	dst = append(dst, s.rec...)
	base := PacketRef{}
	for _, t := range s.tails {
		if len(t.refs) > 0 {
			base = t.refs[0]
			break
		}
	}
	dst, err := appendTailBlock(dst, base, s.ptrs, s.tails)
	if err != nil {
		return dst, fmt.Errorf("flows %d-%d stored late: %w", group[0].f.ID, group[len(group)-1].f.ID, err)
	}
	return dst, nil
}

// restoredGroup is a group of live flows stored alone (N) that a run
// restored.
type restoredGroup struct {
	key, value []byte
	ids        []uint64
}

// writeLive writes, at the commit of run gen, the groups (N) of the live
// flows not in pending blocks: lone indexes liveIDs, and liveAt gives each
// one as it stands. A restored group whose flows are all still among
// them stands when none was touched since (untouched), or when it would
// be written with the value it has; the others are deleted, and the
// flows not in a group that stands are written in new ones. It returns
// the IDs of the flows in N groups, ascending.
func (s *storeSink) writeLive(w *writer, gen uint32, liveIDs []uint64, lone []int, liveAt func(int) liveFlow, untouched func(uint64) bool) ([]uint64, error) {
	ids := make([]uint64, len(lone))
	for i, li := range lone {
		ids[i] = liveIDs[li]
	}
	at := func(id uint64) int { // index in lone
		i, ok := slices.BinarySearch(ids, id)
		if !ok {
			return -1
		}
		return i
	}
	var group []heldLate
	var refs []PacketRef
	encode := func(span uint64, members []int) ([]byte, error) {
		group, refs = group[:0], refs[:0]
		for _, i := range members {
			lf := liveAt(lone[i])
			start := len(refs)
			refs = lf.post.appendRefs(refs)
			group = append(group, heldLate{f: lf.f, chunks: lf.chunks, start: start, end: len(refs)})
		}
		return s.appendLate(nil, span, group, refs)
	}
	done := make([]bool, len(ids)) // in a group that stands
	var members []int
	for _, rg := range s.restoredN {
		members = members[:0]
		clean := true
		for _, id := range rg.ids {
			i := at(id)
			if i < 0 {
				break
			}
			members = append(members, i)
			clean = clean && untouched(id)
		}
		if len(members) < len(rg.ids) { // a flow of it ended, or is in a block
			w.delete(rg.key)
			continue
		}
		// Untouched, it stands (encoded and compared only to test this);
		// touched, it stands if it would be written the same.
		keep := clean && !verifyUnchanged
		if !keep {
			v, err := encode(lateSpanOf(rg.ids[0]), members)
			if err != nil {
				return nil, err
			}
			if keep = bytes.Equal(v, rg.value); !keep && clean {
				return nil, fmt.Errorf("flows %d-%d: taken as unchanged, but their values changed", rg.ids[0], rg.ids[len(rg.ids)-1])
			}
		}
		if !keep {
			w.delete(rg.key)
			continue
		}
		s.kept++
		for _, i := range members {
			done[i] = true
		}
	}
	s.restoredN = nil
	var n uint32
	for i := 0; i < len(ids); {
		if done[i] {
			i++
			continue
		}
		span := lateSpanOf(ids[i])
		members = members[:0]
		for ; i < len(ids) && len(members) < flowBlock && lateSpanOf(ids[i]) == span; i++ {
			if !done[i] {
				members = append(members, i)
			}
		}
		v, err := encode(span, members)
		if err != nil {
			return nil, err
		}
		n++
		w.set(lateGroupKey{tagLateProv, span, gen, n}.encode(), v)
	}
	return ids, w.err
}

// decodeLate decodes a group of flows stored late of span span into ids
// (appended to ids[:0]), rb and tb (by position in the group); want > 0
// stops after the IDs when the group does not hold flow want.
func decodeLate(v []byte, span, want uint64, ids []uint64, rb *recordBlock, tb *tailBlock) ([]uint64, bool, error) {
	bad := func() ([]uint64, bool, error) {
		return ids, false, fmt.Errorf("%w: a group of flows stored late", errCorrupt)
	}
	r := varint.Reader{B: v}
	n := r.Count(1)
	ids = ids[:0]
	id, has := span, want == 0
	for i := 0; i < n && !r.Bad; i++ {
		d := r.Uvarint()
		if d == 0 && i > 0 || d >= lateSpan || id+d >= span+lateSpan { // IDs ascend, in the span
			return bad()
		}
		id += d
		ids = append(ids, id)
		has = has || id == want
	}
	if r.Bad || n == 0 || n > flowBlock {
		return bad()
	}
	if !has {
		return ids, false, nil
	}
	l := r.Count(1)
	rec := r.Bytes(l)
	if r.Bad {
		return bad()
	}
	if err := decodeRecordBlock(rec, lateVirtual, rb); err != nil || rb.present != 1<<n-1 {
		return bad()
	}
	if _, err := decodeTailBlock(r.B, rb, tb, nil); err != nil {
		return ids, false, err
	}
	real := func(id uint64) uint64 {
		if id >= lateVirtual && id-lateVirtual < uint64(n) {
			return ids[id-lateVirtual]
		}
		return id
	}
	for i := range n {
		f := &rb.flows[i]
		f.ID, f.Peer, f.Outer = ids[i], real(f.Peer), real(f.Outer)
	}
	return ids, true, nil
}

func (s *storeSink) inCapture(id uint64, ci int) {
	set := s.inCap[ci]
	if set == nil {
		// The flows that begin in ci are the ones after those started so
		// far; the ones below continue from earlier captures.
		set = &idSet{base: s.created}
		s.inCap[ci] = set
	}
	set.add(id)
}

func (s *storeSink) resumePoint(ci int, out int64, v []byte) error {
	return s.w.set(resumeKey{uint32(ci), uint64(out)}.encode(), v)
}

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
	set := s.inCap[ci]
	delete(s.inCap, ci)
	if set == nil {
		return nil
	}
	return set.each(maxListIDs, func(ids []uint64) error {
		return s.w.setIDs(inCaptureKey{uint32(ci), ids[0]}.encode(), ids[0], ids)
	})
}

// liveFlow is a flow live at a commit: its record as it stands and its
// postings so far.
type liveFlow struct {
	f      flow.Flow
	chunks uint32
	post   postingView
}

// writeBlock writes block pb into w: the flows that ended and, in a
// provisional block (G and R), those live (in ID order). Other IDs are
// holes: their flows are stored alone.
func (s *storeSink) writeBlock(w *writer, pb *pendingBlock, recTag, tailTag byte, live []liveFlow) error {
	if err := s.gather(pb, live); err != nil {
		return err
	}
	s.buf = s.blocks.appendRecordBlock(s.buf[:0], pb.first, s.ptrs)
	if err := s.setBlock(w, recTag, pb.first, s.buf, pb.prevRecs); err != nil {
		return err
	}
	var err error
	if s.buf, err = appendTailBlock(s.buf[:0], pb.ref, s.ptrs, s.tails); err != nil {
		return fmt.Errorf("block %d: %w", pb.first, err)
	}
	return s.setBlock(w, tailTag, pb.first, s.buf, pb.prevTails)
}

// gather decodes pb's entries and takes the live flows into s.ptrs and
// s.tails, in ID order.
func (s *storeSink) gather(pb *pendingBlock, live []liveFlow) error {
	d := &s.dec
	d.first, d.base, d.have = pb.first, pb.base, 0
	s.ptrs, s.tails, s.arena = s.ptrs[:0], s.tails[:0], s.arena[:0]
	for i := uint64(0); i < flowBlock; i++ {
		id := pb.first + i
		if id >= s.created {
			break
		}
		var f *flow.Flow
		start := len(s.arena)
		var chunks uint32
		switch {
		case pb.has(i):
			var err error
			if f, err = d.decode(pb.rec(i), id); err != nil {
				return fmt.Errorf("flow %d: %w", id, err)
			}
			c, tail, _, err := splitTail(pb.tail(i))
			if err != nil {
				return err
			}
			if s.arena, err = decodeChunk(tail, pb.ref, s.arena); err != nil {
				return err
			}
			chunks = c
		case len(live) > 0 && live[0].f.ID == id:
			f = &live[0].f
			chunks = live[0].chunks
			s.arena = live[0].post.appendRefs(s.arena)
			live = live[1:]
		default:
			continue // a hole
		}
		s.ptrs = append(s.ptrs, f)
		s.tails = append(s.tails, tailOf{chunks, s.arena[start:len(s.arena):len(s.arena)]})
	}
	return nil
}

// setBlock writes a block's value, unless it is a provisional one that
// has that value already (prev).
func (s *storeSink) setBlock(w *writer, tag byte, first uint64, v, prev []byte) error {
	if (tag == tagFlowsProv || tag == tagTailsProv) && prev != nil && bytes.Equal(v, prev) {
		s.kept++
		return nil
	}
	return w.set(blockKey{tag, first}.encode(), v)
}

// idSet gathers the IDs of the flows that have packets in one capture,
// in about a bit each: the flows that begin in it are dense from base
// (the capture's first new flow) on, and held as a bitmap; the older
// ones it continues are listed. A 1.2 M-flow capture held 9.6 MB of IDs.
type idSet struct {
	base  uint64
	bits  []uint64 // bit i: ID base+i
	older []uint64 // IDs below base
}

func (s *idSet) add(id uint64) {
	if id < s.base {
		s.older = append(s.older, id)
		return
	}
	i := id - s.base
	for uint64(len(s.bits)) <= i/64 {
		s.bits = append(s.bits, 0)
	}
	s.bits[i/64] |= 1 << (i % 64)
}

// each calls fn with the IDs in ascending order, at most max at a time.
func (s *idSet) each(max int, fn func(ids []uint64) error) error {
	older := slices.Clone(s.older)
	slices.Sort(older)
	older = slices.Compact(older)
	buf := make([]uint64, 0, min(max, 4096))
	emit := func(id uint64) error {
		buf = append(buf, id)
		if len(buf) < max {
			return nil
		}
		err := fn(buf)
		buf = buf[:0]
		return err
	}
	for _, id := range older {
		if err := emit(id); err != nil {
			return err
		}
	}
	for w, x := range s.bits {
		for x != 0 {
			j := bits.TrailingZeros64(x)
			x &= x - 1
			if err := emit(s.base + uint64(w)*64 + uint64(j)); err != nil {
				return err
			}
		}
	}
	if len(buf) > 0 {
		return fn(buf)
	}
	return nil
}
