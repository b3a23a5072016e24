package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pcapflow/pcapflow/flow"
)

// verifyUnchanged makes a commit encode the provisional values it takes
// as unchanged anyway, and fail if they differ (set by the tests).
var verifyUnchanged bool

// SchemaVersion identifies the key layout and record encodings; an index
// written with another version must be rebuilt.
//
// Schema 5 (issue 16, seventh session): responders that mirror the flow
// before them are listed only in the paired list (startAttrs.add), ID
// lists may be stored as the IDs they lack (listGaps), offsets are kept
// every 128 records.
//
// Schema 6 (issue 16, twelfth session): flows that outlive their block
// are stored in groups of a span of IDs (L keys, storeSink.flushLate;
// N keys for those live at the commit, storeSink.writeLive), not a key
// each.
const SchemaVersion = "pcapflow-index/6"

// BuildResult reports what Build did.
type BuildResult struct {
	Added   []CaptureInfo // captures indexed by this run, in time order
	Skipped []string      // captures already in the index
	// Settling are the new captures left for a later run: modified less
	// than Options.Settle ago, or after one that was (in time order).
	Settling []string
	Errors   []error // captures that could not be read (left out), or only in part (added up to the damage)
	// NotCaptures are files in the directories given that are not
	// captures (by their content); they were passed over.
	NotCaptures []string
	Flows       uint64 // flows in the index after the run
	Live        int    // of them, flows whose connection was still open at the end
	kept        int    // provisional values left as they were, being unchanged (tests)
}

// ErrOlder means a capture to add begins before the end of the archive:
// an index is built in time order, so it cannot go in.
var ErrOlder = errors.New("capture is older than the end of the archive")

// ErrSettings means captures were to be added with flow settings other
// than the index's.
var ErrSettings = errors.New("flow settings differ from the index's")

// killPoint, set by tests (export_test.go), is called at named points of
// Build; a test that exits there simulates a killed index run.
var killPoint = func(string) {}

// Build creates the index in dir, or adds to it the captures it does not
// hold yet (matched by absolute path). Directories among paths are
// searched for captures by content (Discover). The new captures are read
// in time order, continuing the archive: connections still open at its
// end continue into them, so an index built one capture at a time, in
// time order, equals one built from all of them at once.
//
// A capture that cannot be read at all is left out, and one that can be
// read only in part is indexed up to the damage; both are reported in
// the result's Errors. If no capture can be read and dir was made by
// this call, dir is removed again.
//
// Durability: every key written while captures are read is new; the
// keys that change (provisional records of live flows, the live state,
// the metadata) are written in one batch at the end, and made durable by
// a flush. A run that dies before leaves the index as it was.
func Build(ctx context.Context, dir string, paths []string, opts Options) (*BuildResult, error) {
	res := &BuildResult{}
	disc, err := discoverInput(paths)
	if err != nil {
		return res, err
	}
	w, err := OpenWriter(dir, opts)
	if err != nil {
		return res, err
	}
	res, err = w.add(ctx, disc)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

// discoverInput checks and expands the paths to add.
func discoverInput(paths []string) (*Discovery, error) {
	for _, p := range paths {
		if p == "-" {
			return nil, fmt.Errorf("standard input cannot be indexed (it cannot be read again for extraction); save it to a file first")
		}
	}
	return Discover(paths)
}

// Writer is an index open for adding captures, by one process at a time
// (others get ErrInUse), which can meanwhile hand out readers of what it
// last committed (Reader): a server that indexes what arrives answers
// queries all along. Its methods are not safe for concurrent use, except
// Reader, which may be called at any time from any goroutine.
type Writer struct {
	dir  string
	db   *pebble.DB
	lock *os.File
	g    *guard
	raw  *rawFlushes
	opts Options
	made bool // dir did not exist before OpenWriter
	gen  uint32
	err  error // sticky: the store failed (ErrStore); no more adds
	mu   sync.Mutex
}

// OpenWriter opens (or creates) the index in dir for adding captures.
func OpenWriter(dir string, opts Options) (*Writer, error) {
	_, statErr := os.Stat(dir)
	made := errors.Is(statErr, os.ErrNotExist)
	g, raw := newGuard(dir), new(rawFlushes)
	db, lf, err := openLocked(dir, true, opts.fs, opts.memtable, g, raw)
	if err != nil {
		if made {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	return &Writer{dir: dir, db: db, lock: lf, g: g, raw: raw, opts: opts, made: made}, nil
}

// Add indexes the captures among paths the index does not hold yet, as
// Build does, and commits them.
func (w *Writer) Add(ctx context.Context, paths []string) (*BuildResult, error) {
	disc, err := discoverInput(paths)
	if err != nil {
		return &BuildResult{}, err
	}
	return w.add(ctx, disc)
}

func (w *Writer) add(ctx context.Context, disc *Discovery) (*BuildResult, error) {
	res := &BuildResult{NotCaptures: disc.Skipped}
	if w.err != nil {
		return res, w.err
	}
	b := &builder{dir: w.dir, db: w.db, g: w.g, raw: w.raw, opts: &w.opts, res: res}
	err := b.run(ctx, disc.Captures)
	w.mu.Lock()
	w.gen = b.meta.gen
	if b.committed {
		w.gen++
	}
	if w.g.error() != nil {
		w.err = w.g.error()
	}
	w.mu.Unlock()
	return res, err
}

// Reader returns a reader of the index as last committed: a snapshot,
// which later adds do not change. Close it when done. It fails when
// nothing was committed yet (ErrIncomplete) or the store failed.
func (w *Writer) Reader() (*Store, error) {
	if err := w.g.error(); err != nil {
		return nil, err
	}
	s := &Store{dir: w.dir, db: w.db.NewSnapshot()}
	return s.load()
}

// Close closes the index. A new index into which nothing was committed
// is removed again, so that no empty index is left to answer.
func (w *Writer) Close() error {
	err := w.g.close(w.db)
	w.lock.Close()
	if w.made && w.gen == 0 {
		os.RemoveAll(w.dir)
	}
	return err
}

type builder struct {
	dir       string
	db        *pebble.DB
	g         *guard
	raw       *rawFlushes // the writer's: never nil
	opts      *Options
	res       *BuildResult
	meta      committed
	w         writer
	committed bool
}

func (b *builder) setMeta(w *writer, name metaKey, v string) error {
	return w.set(name.encode(), []byte(v))
}

func (b *builder) run(ctx context.Context, paths []string) error {
	b.w = writer{db: b.db, g: b.g, limit: b.opts.memtable}
	m, err := readCommitted(b.db)
	if err != nil {
		return fmt.Errorf("%s: %w", b.dir, err)
	}
	b.meta = m
	switch {
	case m.version == "" && m.gen == 0:
	case m.version != SchemaVersion:
		return fmt.Errorf("%s: %w: it is %q, this pcapflow writes %q", b.dir, ErrSchema, m.version, SchemaVersion)
	}
	if m.gen > 0 && b.opts.KeepSettings {
		b.opts.Settings = m.settings
	}
	if m.gen > 0 && !reflect.DeepEqual(m.settings.Filled(), b.opts.Settings.Filled()) {
		return fmt.Errorf("%s: %w (the index: %s; asked: %s)", b.dir, ErrSettings, m.settings, b.opts.Settings)
	}
	// Which captures are new, and may they go in?
	known := map[string]bool{}
	for _, c := range m.captures {
		known[c.Path] = true
	}
	var fresh []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if known[abs] {
			c := m.captures[slices.IndexFunc(m.captures, func(c CaptureInfo) bool { return c.Path == abs })]
			_, grown, err := locateCapture(b.dir, &c)
			if err != nil {
				return err
			}
			if grown > 0 {
				// Said on every run and every query (Store.Grown): the
				// bytes it gained are in no answer.
				b.opts.warn(&GrownError{Capture: p, OldSize: c.Size, NewSize: grown})
			}
			b.res.Skipped = append(b.res.Skipped, p)
			continue
		}
		known[abs] = true
		fresh = append(fresh, p)
	}
	srcs, _, errs := order(fresh, nil)
	b.res.Errors = append(b.res.Errors, errs...)
	if settle := b.opts.Settle; settle > 0 {
		now := time.Now()
		for i, src := range srcs {
			if st, err := os.Stat(src.path); err == nil && now.Sub(st.ModTime()) < settle {
				for _, s := range srcs[i:] {
					b.res.Settling = append(b.res.Settling, s.path)
				}
				srcs = srcs[:i]
				break
			}
		}
	}
	if m.gen > 0 {
		for _, src := range srcs {
			if !src.empty && src.first < m.clock {
				return fmt.Errorf("%s: %w (it begins at %s; the archive in %s ends at %s)", src.path, ErrOlder,
					formatNS(src.first), b.dir, formatNS(m.clock))
			}
		}
	}
	if len(srcs) == 0 {
		if m.gen > 0 && m.state != "complete" {
			return b.recover()
		}
		return nil
	}
	if m.gen > 0 && m.state != "complete" {
		if err := b.recover(); err != nil {
			return err
		}
	}
	if err := b.setMeta(&b.w, metaVersion, SchemaVersion); err != nil {
		return err
	}
	if err := b.setMeta(&b.w, metaState, "building"); err != nil {
		return err
	}
	if err := b.flush(); err != nil {
		return err
	}
	killPoint("building")
	return b.ingest(ctx, srcs)
}

// Filled returns s with its defaults written out (an idle timeout that
// is never stays negative): what an index records and compares.
func (s Settings) Filled() Settings {
	if s.IdleTimeout == 0 {
		s.IdleTimeout = flow.DefaultIdleTimeout
	}
	s.CloseTimeout = s.closeAfter()
	if len(s.VXLANPorts) == 0 {
		s.VXLANPorts = nil
	}
	return s
}

func (s Settings) String() string {
	idle := "idle timeout " + s.idle().String()
	if s.idle() == 0 {
		idle = "no idle timeout"
	}
	idle += ", close timeout " + s.closeAfter().String()
	if s.NoTunnels {
		idle += ", tunnels not opened"
	}
	if len(s.VXLANPorts) > 0 {
		idle += fmt.Sprintf(", VXLAN ports %v", s.VXLANPorts)
	}
	return idle
}

func (b *builder) flush() error {
	if err := b.w.commit(); err != nil {
		return err
	}
	return b.g.flush(b.db)
}

// ingest reads the new captures into the store and commits.
func (b *builder) ingest(ctx context.Context, srcs []source) error {
	m := &b.meta
	gen := m.gen + 1
	sink := newStoreSink(&b.w, gen, m.nextID, b.opts.Settings)
	if b.opts.endFlush > 0 {
		sink.end.flushAt = b.opts.endFlush
	}
	if b.opts.lateFlush > 0 {
		sink.lateFlushAt = b.opts.lateFlush
	}
	if b.opts.mapFlush > 0 {
		sink.start.mappedAt = b.opts.mapFlush
	}
	// A fresh store's first run is compacted at its commit: until then
	// its level-0 tables are written raw (rawFlushes).
	if m.gen == 0 {
		b.raw.on.Store(true)
		defer b.raw.on.Store(false)
	}
	// The store's side of the work runs in its own goroutine.
	as := newAsyncSink(sink)
	g := newIngest(b.opts, as, m.nextID)
	if err := b.restore(g, sink); err != nil {
		as.close()
		return err
	}
	readErr := g.read(ctx, srcs, b.opts.stdin(), len(m.captures))
	if err := as.close(); readErr == nil {
		readErr = err
	}
	b.res.Errors = append(b.res.Errors, g.errs...)
	if readErr != nil {
		return readErr
	}
	killPoint("data-written")
	return b.commit(g, sink)
}

// restore loads the state of the last commit: the live flows into the
// table with their postings, and the blocks still waiting for some of
// them.
func (b *builder) restore(g *ingest, sink *storeSink) error {
	if b.meta.stateLen == 0 {
		return nil
	}
	tstate, ids, err := b.liveState()
	if err != nil {
		return err
	}
	lc, err := b.newLiveCursor(ids, sink)
	if err != nil {
		return err
	}
	// The records are read and decoded on another core, batches ahead of
	// the table, which takes them in order (restoring the live state was
	// serial, before the first packet: on the archive of the 2 GB real
	// capture rotated into 100 MB files, 0.26 s of a 0.65 s run adding a
	// file, for 290 k live flows).
	out, free := make(chan *restoredBatch, restoreAhead), make(chan *restoredBatch, restoreAhead+2)
	for range cap(free) {
		free <- new(restoredBatch)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		lc.produce(out, free, stop)
	}()
	defer func() {
		close(stop)
		for range out {
		}
		<-done
		lc.close()
	}()
	var cur *restoredBatch
	pos, n := 0, 0
	// take receives the next batch; it fails with the batch's error, or
	// when the producer ended without sending its last one.
	take := func() error {
		if cur = <-out; cur == nil {
			return errors.New("the live flows' records ended early")
		}
		return cur.err
	}
	// RestoreTable puts the live flows in slots 0, 1, ... in ID order,
	// the order it asks for their records in: each one's postings go to
	// its slot as its record is taken.
	t, err := flow.RestoreTable(g.t.Options(), tstate, func(id uint64) (*flow.Flow, error) {
		for cur == nil || pos == len(cur.flows) {
			if cur != nil {
				if cur.last {
					return nil, fmt.Errorf("live flow %d: %w: no record", id, errCorrupt)
				}
				free <- cur // never blocks: every batch fits
			}
			if err := take(); err != nil {
				return nil, err
			}
			pos = 0
		}
		f := &cur.flows[pos]
		if f.ID != id {
			return nil, fmt.Errorf("live flow %d asked for, flow %d read", id, f.ID)
		}
		p := g.ps.slots.at(int32(n))
		p.chunks, _ = tailSplit(f.Packets)
		for _, ref := range cur.refs[cur.from(pos):cur.ends[pos]] {
			p.add(ref, &g.ps.pool)
		}
		pos++
		n++
		return f, nil
	})
	if err == nil && n != len(ids) {
		err = fmt.Errorf("%d of %d live flows restored", n, len(ids))
	}
	// The producer ends with the blocks and groups past the last live
	// flow (liveCursor.finish), in its last batch.
	for err == nil && (cur == nil || !cur.last) {
		if err = take(); err == nil && len(cur.flows) > 0 {
			err = fmt.Errorf("%d live flows restored, more read", n)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", b.dir, err)
	}
	g.t = t
	g.watch(b.meta.nextID)
	for j, id := range ids {
		if fi := int32(j); t.Flow(fi).ID != id {
			return fmt.Errorf("%s: live flow %d restored in slot %d, which holds flow %d", b.dir, id, fi, t.Flow(fi).ID)
		}
	}
	return nil
}

// liveState reads the table's live state and the IDs of its live flows.
func (b *builder) liveState() ([]byte, []uint64, error) {
	parts := make([][]byte, b.meta.stateLen)
	n := 0
	for i := range parts {
		v, c, err := b.db.Get(stateKey(i).encode())
		if err != nil {
			return nil, nil, fmt.Errorf("%s: live state %d: %w", b.dir, i, err)
		}
		parts[i] = slices.Clone(v)
		n += len(v)
		c.Close()
	}
	tstate := make([]byte, 0, n)
	for _, p := range parts {
		tstate = append(tstate, p...)
	}
	ids, err := flow.StateIDs(tstate)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", b.dir, err)
	}
	if !slices.IsSorted(ids) {
		return nil, nil, fmt.Errorf("%s: live state: %w: flow IDs out of order", b.dir, errCorrupt)
	}
	return tstate, ids, nil
}

// liveCursor reads what the last commit holds of the live flows, in ID
// order: each one's record and postings past its full chunks, from the
// provisional block that holds it or its key stored alone, merging the
// two as it goes. With a sink, each block it passes becomes a pending
// block of the sink again, and each key stored alone is remembered as it
// was. Decoding as it goes, rather than every live flow's record first,
// saves a copy of 270 k records (67 MB) when a file is added to the 2 GB
// real capture's archive.
type liveCursor struct {
	sink   *storeSink
	ids    []uint64         // the live flows, ascending
	n      int              // records given so far: ids[:n]
	recs   *pebble.Iterator // the restored blocks' records (G), at the next one to read
	tails  *pebble.Iterator // and their tails (R), in step
	rb     recordBlock
	tb     tailBlock
	haveRB bool
	arena  []PacketRef      // the refs of the block read last
	alone  *pebble.Iterator // the groups of live flows stored alone (N)
	span   uint64           // the span whose N groups are in spanFlows; 0: none
	spanAt map[uint64]int   // those flows, by ID: index in spanFlows
	spanFl []heldLate       // with their tails in spanRefs
	spanRf []PacketRef
	lateRB recordBlock
	lateTB tailBlock
	ids0   []uint64
	post   postingBuf
	pool   bufPool
}

// newLiveCursor reads the provisional keys in key order, with an
// iterator per tag: one point lookup per block and tag was 6% of adding a
// file to the 2 GB real capture's archive.
func (b *builder) newLiveCursor(ids []uint64, sink *storeSink) (*liveCursor, error) {
	c := &liveCursor{sink: sink, ids: ids}
	for _, x := range []struct {
		it  **pebble.Iterator
		tag byte
	}{{&c.recs, tagFlowsProv}, {&c.tails, tagTailsProv}, {&c.alone, tagLateProv}} {
		it, err := b.db.NewIter(&pebble.IterOptions{LowerBound: []byte{x.tag}, UpperBound: []byte{x.tag + 1}})
		if err != nil {
			c.close()
			return nil, err
		}
		it.First()
		*x.it = it
	}
	return c, nil
}

func (c *liveCursor) close() {
	for _, it := range []*pebble.Iterator{c.recs, c.tails, c.alone} {
		if it != nil {
			it.Close()
		}
	}
}

// nextBlock is the first ID of the next restored block to read.
func (c *liveCursor) nextBlock() (uint64, bool) {
	if !c.recs.Valid() {
		return 0, false
	}
	return binary.BigEndian.Uint64(c.recs.Key()[1:]), true
}

// liveIn is the set of live flows among first, first+1, ...
// first+flowBlock-1, as bits: one search of the live IDs per block
// instead of one per flow and peer (a sixth of the cursor's time).
func (c *liveCursor) liveIn(first uint64) uint64 {
	var m uint64
	i, _ := slices.BinarySearch(c.ids, first)
	for ; i < len(c.ids) && c.ids[i] < first+flowBlock; i++ {
		m |= 1 << (c.ids[i] - first)
	}
	return m
}

// record returns live flow id's record and postings past its full
// chunks, valid until the next call. The flows are asked for in order.
func (c *liveCursor) record(id uint64) (*flow.Flow, []PacketRef, error) {
	if c.n >= len(c.ids) || c.ids[c.n] != id {
		return nil, nil, fmt.Errorf("live flow %d asked for out of order", id)
	}
	c.n++
	for first, ok := c.nextBlock(); ok && first <= id; first, ok = c.nextBlock() {
		if err := c.readBlock(first); err != nil {
			return nil, nil, err
		}
	}
	if c.haveRB && c.rb.has(id) {
		i := id - c.rb.first
		return &c.rb.flows[i], c.tb.tails[i].refs, nil
	}
	if span := lateSpanOf(id); span != c.span {
		if err := c.readSpan(span); err != nil {
			return nil, nil, err
		}
	}
	if i, ok := c.spanAt[id]; ok {
		h := &c.spanFl[i]
		return &h.f, c.spanRf[h.start:h.end], nil
	}
	return nil, nil, fmt.Errorf("live flow %d: %w: no record", id, errCorrupt)
}

// readSpan reads the N groups of span, passing those before it.
func (c *liveCursor) readSpan(span uint64) error {
	c.span = span
	clear(c.spanAt)
	if c.spanAt == nil {
		c.spanAt = map[uint64]int{}
	}
	c.spanFl, c.spanRf = c.spanFl[:0], c.spanRf[:0]
	for c.alone.Valid() {
		k, err := decodeLateGroupKey(c.alone.Key())
		if err != nil {
			return err
		}
		if k.span > span {
			break
		}
		var ids []uint64
		if k.span == span {
			if ids, _, err = decodeLate(c.alone.Value(), span, 0, c.ids0, &c.lateRB, &c.lateTB); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			c.ids0 = ids
			for i, id := range ids {
				c.spanAt[id] = len(c.spanFl)
				start := len(c.spanRf)
				c.spanRf = append(c.spanRf, c.lateTB.tails[i].refs...)
				c.spanFl = append(c.spanFl, heldLate{f: c.lateRB.flows[i], chunks: c.lateTB.tails[i].chunks, start: start, end: len(c.spanRf)})
			}
		}
		if err := c.passAlone(k, ids); err != nil {
			return err
		}
	}
	return c.alone.Error()
}

// passAlone moves past the current N group, of key k, which the sink
// keeps as it was; ids are its flows when they were decoded (nil: not).
func (c *liveCursor) passAlone(k lateGroupKey, ids []uint64) error {
	if c.sink != nil {
		v := bytes.Clone(c.alone.Value())
		if ids == nil {
			var err error
			if ids, _, err = decodeLate(v, k.span, ^uint64(0), nil, nil, nil); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		c.sink.restoredN = append(c.sink.restoredN, restoredGroup{key: k.encode(), value: v, ids: slices.Clone(ids)})
	}
	c.alone.Next()
	return nil
}

// finish reads the blocks and keys stored alone past the last live flow.
func (c *liveCursor) finish() error {
	if c.n != len(c.ids) {
		return fmt.Errorf("%d of %d live flows restored", c.n, len(c.ids))
	}
	for first, ok := c.nextBlock(); ok; first, ok = c.nextBlock() {
		if err := c.readBlock(first); err != nil {
			return err
		}
	}
	for c.alone.Valid() {
		k, err := decodeLateGroupKey(c.alone.Key())
		if err != nil {
			return err
		}
		if err := c.passAlone(k, nil); err != nil {
			return err
		}
	}
	return errors.Join(c.recs.Error(), c.tails.Error(), c.alone.Error())
}

// restoredBatch is a run of live flows read back for the table, in ID
// order, with their postings past their full chunks.
type restoredBatch struct {
	flows []flow.Flow
	ends  []int // flow i's refs are refs[ends[i-1]:ends[i]]
	refs  []PacketRef
	err   error // reading failed after flows
	last  bool  // the last batch: the cursor finished
}

func (b *restoredBatch) from(i int) int {
	if i == 0 {
		return 0
	}
	return b.ends[i-1]
}

// restoreBatch is how many flows a restoredBatch carries, and
// restoreAhead how many batches the reading may be ahead.
const (
	restoreBatch = 1024
	restoreAhead = 4
)

// produce reads every live flow's record, in order, into batches sent on
// out, then finishes the cursor (finish), until stop is closed. Batches
// come from free.
func (c *liveCursor) produce(out chan<- *restoredBatch, free <-chan *restoredBatch, stop <-chan struct{}) {
	var bt *restoredBatch
	get := func() bool {
		select {
		case bt = <-free:
			bt.flows, bt.ends, bt.refs = bt.flows[:0], bt.ends[:0], bt.refs[:0]
			return true
		case <-stop:
			return false
		}
	}
	send := func() bool {
		select {
		case out <- bt:
			return true
		case <-stop:
			return false
		}
	}
	if !get() {
		return
	}
	for _, id := range c.ids {
		f, refs, err := c.record(id)
		if err != nil {
			bt.err = err
			send()
			return
		}
		bt.flows = append(bt.flows, *f)
		bt.refs = append(bt.refs, refs...)
		bt.ends = append(bt.ends, len(bt.refs))
		if len(bt.flows) == restoreBatch && !(send() && get()) {
			return
		}
	}
	bt.err, bt.last = c.finish(), true
	send()
}

// readBlock decodes the next block with provisional keys, whose first ID
// is first. With a sink it becomes a pending block again: the flows not
// live any more ended before the commit, and are encoded as the sink
// keeps ended flows.
func (c *liveCursor) readBlock(first uint64) error {
	if !c.tails.Valid() || !bytes.Equal(c.tails.Key()[1:], c.recs.Key()[1:]) {
		if err := c.tails.Error(); err != nil {
			return err
		}
		return fmt.Errorf("block %d: %w: records without tails", first, errCorrupt)
	}
	recs, tails := slices.Clone(c.recs.Value()), slices.Clone(c.tails.Value())
	c.recs.Next()
	c.tails.Next()
	rb := &c.rb
	if err := decodeRecordBlock(recs, first, rb); err != nil {
		return err
	}
	var err error
	if c.arena, err = decodeTailBlock(tails, rb, &c.tb, c.arena); err != nil {
		return fmt.Errorf("block %d: %w", first, errCorrupt)
	}
	c.haveRB = true
	if c.sink == nil {
		return nil
	}
	pb := &pendingBlock{first: first, prevRecs: recs, prevTails: tails}
	live := c.liveIn(first)
	var baseSet bool
	for i := uint64(0); i < flowBlock; i++ {
		if rb.present&(1<<i) == 0 {
			continue
		}
		f := &rb.flows[i]
		tl := c.tb.tails[i]
		if !baseSet {
			// The block's bases: those of its first flow, which started it.
			pb.base = blockBase{f.First, f.Capture}
			if len(tl.refs) > 0 {
				pb.ref = tl.refs[0]
			}
			baseSet = true
		}
		if live&(1<<i) != 0 {
			continue
		}
		var peer *flow.Flow
		if f.Peer < f.ID && rb.has(f.Peer) && live&(1<<(f.Peer-first)) == 0 {
			peer = &rb.flows[f.Peer-first]
		}
		c.post.reset()
		for _, ref := range tl.refs {
			c.post.add(ref, &c.pool)
		}
		pb.put(i, appendEntry(nil, f, pb.base, peer), appendTail(nil, tl.chunks, c.post.view(&c.pool).appendChunk(nil, pb.ref)))
	}
	pb.changed = false // rebuilt as it was
	c.sink.pending[first] = pb
	c.sink.queue = append(c.sink.queue, first) // in order: the blocks are
	c.sink.restoredG[first] = true
	return nil
}

// restoredBlocks lists the blocks with provisional keys, in order.
func restoredBlocks(db *pebble.DB) []uint64 {
	var out []uint64
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagFlowsProv}, UpperBound: []byte{tagFlowsProv + 1}})
	if err != nil {
		return out
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		out = append(out, binary.BigEndian.Uint64(it.Key()[1:]))
	}
	return out
}

// compactsAtEnd reports whether the commit compacts the store, beside
// the rest of its work: when the run made the store (no commit before
// it) and wrote several level-0 tables or any raw one (rawFlushes), or
// when level 0 is l0Deep sublevels deep. Left to Pebble, the
// compaction came after the commit's last flush, and the index command
// waited for it in Close (0.38 s of the 2 GB real capture's run,
// serial); or it did not come, short of Pebble's threshold: on the 2 GB
// real capture, 11 overlapping tables left that way take 20.82 MB
// (1.007% of the capture), 6 compacted ones 20.57 MB, and a one-flow
// extract opens 3 tables instead of 8.
func (b *builder) compactsAtEnd() bool {
	l0 := b.db.Metrics().Levels[0]
	return b.meta.gen == 0 && (l0.TablesCount >= 2 || b.raw.wrote.Load()) || l0.Sublevels >= l0Deep
}

// commitBatch is the size the commit's batch is made with.
const commitBatch = 16 << 20

// commit writes, in one batch, what changes at the end of a run: the
// provisional records of the flows still live, the live state, the new
// captures and the metadata; then it flushes.
func (b *builder) commit(g *ingest, sink *storeSink) (err error) {
	m := &b.meta
	t := g.t
	// Finding the live flows and encoding the table's live state read
	// the table without changing it, as everything below does, and need
	// nothing else: so they run meanwhile on another core. (On the 2 GB
	// real capture, one after the other these were 0.8 s of the serial
	// time between a run's last packet and its commit.)
	type live struct {
		slots []int32
		ids   []uint64
	}
	type encoded struct {
		b   []byte
		err error
	}
	liveC, stateC := make(chan live, 1), make(chan encoded, 1)
	go func() {
		slots := t.LiveFlows()
		ids := make([]uint64, len(slots))
		for i, fi := range slots {
			ids[i] = t.Flow(fi).ID
		}
		liveC <- live{slots, ids}
		v, err := t.MarshalState(slots)
		stateC <- encoded{v, err}
	}()
	// The lists and blocks of flows that started or ended, as new keys.
	if err := sink.flushLate(); err != nil {
		return err
	}
	if err := sink.start.flush(t.NextID()); err != nil {
		return err
	}
	if err := sink.end.flush(); err != nil {
		return err
	}
	if err := b.w.commit(); err != nil {
		return err
	}
	// What is flushed from here on (the commit's batch) is not compacted.
	b.raw.on.Store(false)
	killPoint("data-flushed")
	// Level 0 is compacted, when compactsAtEnd says so (a fresh store,
	// or a deep level 0), beside the rest of the commit.
	compacted := make(chan error, 1)
	if b.compactsAtEnd() {
		go func() {
			// Through the guard: on a full disk Pebble retries its flushes
			// and the compaction would wait for them for ever.
			compacted <- b.g.wait(func() error { return b.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false) })
		}()
	} else {
		compacted <- nil
	}
	defer func() {
		if cerr := <-compacted; err == nil && cerr != nil {
			err = fmt.Errorf("%s: %w", b.dir, cerr)
		}
	}()
	// The commit's batch is 11.7 MB on the 2 GB real capture (the live
	// state and the pending blocks): made at its size, it is not grown
	// from 5 MB by doubling, copying 15 MB (60 ms) on the serial end. A
	// batch's memory is not touched before it is written to.
	cw := &writer{db: b.db, g: b.g, whole: true, hint: commitBatch}
	lv := <-liveC
	liveSlots, liveIDs := lv.slots, lv.ids
	// A live flow as it stands, with its postings (made as needed: a
	// copy of every live flow at once was the peak of an index run's
	// memory).
	liveAt := func(i int) liveFlow {
		fi := liveSlots[i]
		var lf liveFlow
		t.Snapshot(fi, &lf.f)
		p := g.ps.slots.at(fi)
		lf.chunks, lf.post = p.chunks, p.view(&g.ps.pool)
		return lf
	}
	// The live flows not in pending blocks (they outlived theirs) are
	// stored in groups, as the flows stored late are.
	var lone []int // their indexes in liveIDs
	alone := func(i int) { lone = append(lone, i) }
	firsts := make([]uint64, 0, len(sink.pending))
	for first := range sink.pending {
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	// The pending blocks with their live flows, in ID order; the other
	// live flows are stored alone.
	next := 0
	var inBlock []liveFlow
	for _, first := range firsts {
		for ; next < len(liveIDs) && liveIDs[next] < first; next++ {
			alone(next)
		}
		pb := sink.pending[first]
		delete(sink.restoredG, first)
		// Restored, and nothing of it changed: its provisional values
		// stand (they are encoded and compared only to test this).
		clean := pb.prevRecs != nil && !pb.changed && g.untouched(first)
		if clean && !verifyUnchanged {
			for ; next < len(liveIDs) && liveIDs[next] < first+flowBlock; next++ {
			}
			sink.kept += 2
			continue
		}
		inBlock = inBlock[:0]
		for ; next < len(liveIDs) && liveIDs[next] < first+flowBlock; next++ {
			inBlock = append(inBlock, liveAt(next))
		}
		kept := sink.kept
		if err := sink.writeBlock(cw, pb, tagFlowsProv, tagTailsProv, inBlock); err != nil {
			return err // the state's goroutine ends by itself: its channel has room
		}
		if clean && sink.kept != kept+2 {
			return fmt.Errorf("block %d: taken as unchanged, but its values changed", first)
		}
	}
	for ; next < len(liveIDs); next++ {
		alone(next)
	}
	provLate, err := sink.writeLive(cw, m.gen+1, liveIDs, lone, liveAt, g.untouched)
	if err != nil {
		return err
	}
	st := <-stateC
	if st.err != nil {
		return st.err
	}
	state := st.b
	for first := range sink.restoredG { // provisional then, final now
		cw.delete(blockKey{tagFlowsProv, first}.encode())
		cw.delete(blockKey{tagTailsProv, first}.encode())
	}
	// The live state: the table's (the live flows' postings are in their
	// provisional keys).
	const stateChunk = 1 << 20
	nchunks := 0
	for off := 0; off < len(state) || nchunks == 0; off += stateChunk {
		cw.set(stateKey(nchunks).encode(), state[off:min(off+stateChunk, len(state))])
		nchunks++
	}
	for i := nchunks; i < m.stateLen; i++ {
		cw.delete(stateKey(i).encode())
	}
	// Captures, in index order.
	ncap := len(m.captures)
	for ci := ncap; ; ci++ {
		info := sink.caps[ci]
		if info == nil {
			break
		}
		if rel, err := filepath.Rel(b.dir, info.Path); err == nil {
			info.RelPath = rel
		}
		v, err := json.Marshal(info)
		if err != nil {
			return err
		}
		cw.set(captureKey(ci).encode(), v)
		b.res.Added = append(b.res.Added, *info)
		ncap++
	}
	settings, err := json.Marshal(b.opts.Settings.Filled())
	if err != nil {
		return err
	}
	b.setMeta(cw, metaSettings, string(settings))
	b.setMeta(cw, metaLive, string(appendIDs(nil, 0, liveIDs)))
	// Which blocks and flows are provisional, so that a reader learns it
	// from two keys instead of walking every G and N key (70 of the 90 ms
	// a query took on the 2 GB capture's index).
	b.setMeta(cw, metaProvBlocks, string(appendIDs(nil, 0, firsts)))
	b.setMeta(cw, metaProvLate, string(appendIDs(nil, 0, provLate)))
	b.setMeta(cw, metaState0, strconv.Itoa(nchunks))
	b.setMeta(cw, metaGen, strconv.FormatUint(uint64(m.gen+1), 10))
	b.setMeta(cw, metaNextID, strconv.FormatUint(t.NextID(), 10))
	b.setMeta(cw, metaCaptures, strconv.Itoa(ncap))
	b.setMeta(cw, metaClock, strconv.FormatInt(t.Clock(), 10))
	b.setMeta(cw, metaState, "complete")
	if cw.err != nil {
		return cw.err
	}
	if err := cw.commit(); err != nil {
		return err
	}
	if err := b.g.flush(b.db); err != nil {
		return err
	}
	b.committed = true
	b.res.Flows = t.NextID() - 1
	b.res.Live = len(liveIDs)
	b.res.kept = sink.kept
	killPoint("committed")
	return nil
}

// recover drops what a run that died after the last commit wrote: every
// key of flows, captures and lists beyond the committed ones, and the
// final keys written for blocks and flows that were provisional.
func (b *builder) recover() error {
	m := &b.meta
	w := &writer{db: b.db, g: b.g}
	next := m.nextID
	for _, tag := range []byte{tagFlows, tagTails} {
		w.deleteRange(blockKey{tag, blockOf(next) + flowBlock}.encode(), []byte{tag + 1})
	}
	// Groups of flows stored late by the run are new: those of the spans
	// past the committed flows, and those of the run's generation where
	// they may be (beside committed ones: the span of the first new ID,
	// of blocks that were provisional, of flows stored alone while live).
	lateSpans := map[uint64]bool{lateSpanOf(next): true}
	w.deleteRange(lateBlock(tagLate, lateSpanOf(next)+lateSpan), []byte{tagLate + 1})
	w.deleteRange(chunkKey{next, 0}.encode(), []byte{tagChunk + 1})
	w.deleteRange(checkpointKey{uint32(len(m.captures)), 0}.encode(), []byte{tagCheckpoint + 1})
	w.deleteRange(resumeKey{uint32(len(m.captures)), 0}.encode(), []byte{tagResume + 1})
	w.deleteRange(inCaptureKey{uint32(len(m.captures)), 0}.encode(), []byte{tagInCapture + 1})
	w.deleteRange(binary.BigEndian.AppendUint32([]byte{tagCapture}, uint32(len(m.captures))), []byte{tagCapture + 1})
	// Blocks with provisional keys: final keys beside them are new, and
	// so are keys of their flows stored alone.
	for _, first := range restoredBlocks(b.db) {
		w.delete(blockKey{tagFlows, first}.encode())
		w.delete(blockKey{tagTails, first}.encode())
		lateSpans[lateSpanOf(first)] = true
	}
	if !m.hasBlock(b.db, blockOf(next)) {
		for _, tag := range []byte{tagFlows, tagTails} {
			w.delete(blockKey{tag, blockOf(next)}.encode())
		}
	}
	it, err := b.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagLateProv}, UpperBound: []byte{tagLateProv + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		lateSpans[lateSpanOf(binary.BigEndian.Uint64(it.Key()[1:]))] = true
	}
	if err := it.Close(); err != nil {
		return err
	}
	for span := range lateSpans {
		w.deleteRange(lateFrom(tagLate, span, m.gen+1), lateBlock(tagLate, span+1))
	}
	// Posting chunks of live flows beyond the committed count.
	if err := b.dropLiveChunks(w); err != nil {
		return err
	}
	// Lists: start lists of new flows, final lists of the next generation,
	// address blocks of new segments.
	if err := b.dropLists(w); err != nil {
		return err
	}
	if err := b.setMeta(w, metaState, "complete"); err != nil {
		return err
	}
	if err := w.commit(); err != nil {
		return err
	}
	if err := b.g.flush(b.db); err != nil {
		return err
	}
	b.meta.state = "complete"
	return nil
}

// hasBlock reports whether the block was committed with final keys: it
// holds committed flows and no provisional keys.
func (m *committed) hasBlock(db *pebble.DB, first uint64) bool {
	if first >= m.nextID {
		return false
	}
	_, c, err := db.Get(blockKey{tagFlowsProv, first}.encode())
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// dropLiveChunks deletes the posting chunks that live flows got after
// the commit.
func (b *builder) dropLiveChunks(w *writer) error {
	m := &b.meta
	if m.stateLen == 0 {
		return nil
	}
	_, ids, err := b.liveState()
	if err != nil {
		return err
	}
	lc, err := b.newLiveCursor(ids, nil)
	if err != nil {
		return err
	}
	defer lc.close()
	for _, id := range ids {
		f, _, err := lc.record(id)
		if err != nil {
			return fmt.Errorf("%s: %w", b.dir, err)
		}
		chunks, _ := tailSplit(f.Packets)
		w.deleteRange(chunkKey{id, chunks}.encode(), chunkKey{id + 1, 0}.encode())
	}
	return nil
}

// dropLists deletes the lists a run that did not commit wrote.
func (b *builder) dropLists(w *writer) error {
	m := &b.meta
	for _, tag := range []byte{tagList, tagFinalList, tagAddr} {
		it, err := b.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			drop := false
			switch tag {
			case tagAddr:
				k, err := decodeAddrKey(it.Key())
				drop = err == nil && k.segment >= m.nextID
			default:
				k, err := decodeListKey(it.Key(), fieldWidth(Field(it.Key()[1])))
				drop = err == nil && (k.final && k.gen > m.gen || !k.final && k.first >= m.nextID)
			}
			if drop {
				w.delete(slices.Clone(it.Key()))
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

func formatNS(ns int64) string { return string(flow.AppendTime(nil, ns)) }
