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
	"slices"
	"strconv"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pcapflow/pcapflow/flow"
)

// Store is an index on disk, opened read-only. It answers what the last
// committed index run left; it is safe for concurrent use, and several
// processes may open one index at the same time.
type Store struct {
	dir        string
	db         pebble.Reader // the DB, or a snapshot of a Writer's
	full       *pebble.DB    // the DB when the Store opened it (nil for a snapshot)
	lock       *os.File
	meta       committed
	provBlocks []uint64                 // first IDs of the blocks with G/R keys, ascending
	provLate   func() ([]uint64, error) // flows with N keys, ascending, decoded on first use
	liveIDs    func() ([]uint64, error) // flows live at the commit, read on first use
	pathMu     sync.Mutex
	paths      []string      // located capture files, by capture index ("" until checked)
	missing    []bool        // captures not found where they were (packets cannot be read)
	grown      map[int]int64 // captures that grew since indexed: their size now (Grown)
	windows    resumeCoder   // decodes gzip checkpoints' windows (resume.go)
	// Interrupted is set when an index run died after this commit: what
	// it wrote is ignored.
	Interrupted bool
}

// committed is the metadata of the last commit.
type committed struct {
	version  string
	state    string
	gen      uint32
	nextID   uint64
	captures []CaptureInfo
	settings Settings
	clock    int64
	stateLen int
}

// ErrIncomplete means the index was never committed: its first run
// stopped before the end.
var ErrIncomplete = errors.New("incomplete index: its first index run did not finish (killed or failed)")

// ErrNotIndex means a directory is not a pcapflow index.
var ErrNotIndex = errors.New("not a pcapflow index")

// ErrSchema means the index was written by a pcapflow with another
// layout.
var ErrSchema = errors.New("index schema differs")

// Open opens the index in dir for reading. It refuses a directory that
// holds no committed index and one of another schema version; Check then
// verifies that the captures did not change.
func Open(dir string) (*Store, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: %w (a file, not a directory)", dir, ErrNotIndex)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		return nil, fmt.Errorf("%s: %w (an empty directory)", dir, ErrNotIndex)
	}
	db, lf, err := openLocked(dir, false, nil, 0, nil, nil)
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrIncomplete)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, db: db, full: db, lock: lf}
	return s.load()
}

// load reads the committed metadata of the store's DB or snapshot.
func (s *Store) load() (*Store, error) {
	dir := s.dir
	fail := func(err error) (*Store, error) {
		s.Close()
		return nil, err
	}
	var err error
	s.meta, err = readCommitted(s.db)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", dir, err))
	}
	switch m := &s.meta; {
	case m.version == "" || m.gen == 0:
		// Nothing was ever committed: the first run died.
		return fail(fmt.Errorf("%s: %w", dir, ErrIncomplete))
	case m.version != SchemaVersion:
		return fail(fmt.Errorf("%s: %w: it is %q, this pcapflow reads %q", dir, ErrSchema, m.version, SchemaVersion))
	case m.state != "complete":
		s.Interrupted = true
	}
	if err := s.loadProvisional(); err != nil {
		return fail(err)
	}
	s.paths = make([]string, len(s.meta.captures))
	s.missing = make([]bool, len(s.meta.captures))
	return s, nil
}

// loadProvisional reads which blocks and flows have provisional keys,
// and the flows live at the commit.
func (s *Store) loadProvisional() error {
	// Sorted slices rather than sets: an archive has hundreds of
	// thousands of live flows at its end, and every process that opens
	// the index loads them (a map of them cost most of a 40 ms extract).
	// Only the provisional blocks are needed by every reader; the flows
	// stored alone and the live flows are decoded when first asked for
	// (on the 2 GB real capture they are 21 k and 290 k IDs, which a
	// one-flow extract would otherwise decode for nothing). s.db does
	// not change while the Store is open: it is read-only, or a snapshot.
	s.provBlocks = nil
	pb, err := getMeta(s.db, metaProvBlocks)
	if err != nil {
		return err
	}
	pl, err := getMeta(s.db, metaProvLate)
	if err != nil {
		return err
	}
	if pb != "" && pl != "" { // written by every commit since they exist
		if s.provBlocks, err = decodeIDs([]byte(pb), 0, nil); err != nil {
			return fmt.Errorf("%s: %w", s.dir, err)
		}
		s.provLate = sync.OnceValues(func() ([]uint64, error) {
			ids, err := decodeIDs([]byte(pl), 0, nil)
			if err != nil {
				err = fmt.Errorf("%s: %w", s.dir, err)
			}
			return ids, err
		})
	} else {
		return fmt.Errorf("%s: %w: no list of provisional keys", s.dir, errCorrupt)
	}
	s.liveIDs = sync.OnceValues(func() ([]uint64, error) {
		v, err := getMeta(s.db, metaLive)
		if v == "" || err != nil {
			return nil, err
		}
		ids, err := decodeIDs([]byte(v), 0, nil)
		if err != nil {
			err = fmt.Errorf("%s: live flows: %w", s.dir, err)
		}
		return ids, err
	})
	return nil
}

// readCommitted reads the metadata of the last commit.
func readCommitted(db pebble.Reader) (committed, error) {
	var m committed
	var err error
	get := func(k metaKey) string {
		if err != nil {
			return ""
		}
		var v string
		v, err = getMeta(db, k)
		return v
	}
	m.version = get(metaVersion)
	m.state = get(metaState)
	g, _ := strconv.ParseUint(get(metaGen), 10, 32)
	m.gen = uint32(g)
	m.nextID, _ = strconv.ParseUint(get(metaNextID), 10, 64)
	if m.nextID == 0 {
		m.nextID = 1
	}
	nc, _ := strconv.Atoi(get(metaCaptures))
	m.clock, _ = strconv.ParseInt(get(metaClock), 10, 64)
	m.stateLen, _ = strconv.Atoi(get(metaState0))
	if set := get(metaSettings); set != "" && err == nil {
		err = json.Unmarshal([]byte(set), &m.settings)
	}
	if err != nil {
		return m, err
	}
	for i := 0; i < nc; i++ {
		v, c, err := db.Get(captureKey(i).encode())
		if err != nil {
			return m, fmt.Errorf("capture record %d: %w", i, err)
		}
		var ci CaptureInfo
		err = json.Unmarshal(v, &ci)
		c.Close()
		if err != nil {
			return m, fmt.Errorf("capture record %d: %w", i, err)
		}
		m.captures = append(m.captures, ci)
	}
	return m, nil
}

// Dir is the index directory.
func (s *Store) Dir() string { return s.dir }

// Settings are the flow semantics the index was built with.
func (s *Store) Settings() Settings { return s.meta.settings }

func (s *Store) Close() error {
	var err error
	if s.db != nil {
		err = s.db.Close()
		s.db = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	if s.windows.dec != nil {
		s.windows.dec.Close()
	}
	return err
}

func (s *Store) Captures() []CaptureInfo { return s.meta.captures }
func (s *Store) NumFlows() uint64        { return s.meta.nextID - 1 }
func (s *Store) Indexed() bool           { return true }

// Check verifies that every indexed capture that is present is unchanged
// (a changed one gives a *StaleError). A capture no longer where it was
// is not an error here: listing and counting need no packets; reading
// its records reports it.
func (s *Store) Check() error {
	for i := range s.meta.captures {
		if _, err := s.CapturePath(i); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// CapturePath locates capture i and checks it is unchanged.
func (s *Store) CapturePath(i int) (string, error) {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	if s.paths[i] != "" {
		return s.paths[i], nil
	}
	p, grown, err := locateCapture(s.dir, &s.meta.captures[i])
	if err != nil {
		return "", err
	}
	s.paths[i] = p
	if grown > 0 {
		if s.grown == nil {
			s.grown = map[int]int64{}
		}
		s.grown[i] = grown
	}
	return p, nil
}

// Grown is the size of capture i if it grew after it was indexed (it was
// still being written), and 0 otherwise, as CapturePath (or Check) found
// it. The index answers for the bytes it read; the rest are in no
// answer, since a capture cannot be added to once indexed.
func (s *Store) Grown(i int) int64 {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	return s.grown[i]
}

// get reads a key's value (a copy); nil when it is absent.
func (s *Store) get(k []byte) ([]byte, error) {
	v, c, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := slices.Clone(v)
	c.Close()
	return out, nil
}

// blockValue reads a block's records (F or G) or tails (Q or R); prov
// says it is provisional.
func (s *Store) blockValue(first uint64, tails bool) (v []byte, prov bool, err error) {
	final, ptag := byte(tagFlows), byte(tagFlowsProv)
	if tails {
		final, ptag = tagTails, tagTailsProv
	}
	tag := final
	if _, ok := slices.BinarySearch(s.provBlocks, first); ok {
		tag, prov = ptag, true
	}
	v, err = s.get(blockKey{tag, first}.encode())
	if err == nil && v == nil {
		err = fmt.Errorf("%s: %w: no block %c/%d", s.dir, errCorrupt, tag, first)
	}
	return v, prov, err
}

// lateReader finds the flows missing from their blocks: those stored
// late (L groups) or live at the commit (N groups). It keeps the group
// it read last: flows are asked for in ID order, and a group holds such
// flows of a span of IDs.
type lateReader struct {
	s    *Store
	tag  byte     // of the group held
	span uint64   // its span; 0: none
	ids  []uint64 // its flows
	rb   recordBlock
	tb   tailBlock
}

// flow returns flow id's record, its full chunk count and the rest of
// its postings, valid until the next call.
func (l *lateReader) flow(id uint64) (*flow.Flow, uint32, []PacketRef, error) {
	late, err := l.s.provLate()
	if err != nil {
		return nil, 0, nil, err
	}
	tag := byte(tagLate)
	if _, ok := slices.BinarySearch(late, id); ok {
		tag = tagLateProv
	}
	span := lateSpanOf(id)
	i, ok := slices.BinarySearch(l.ids, id)
	if l.tag != tag || l.span != span || !ok {
		if i, err = l.find(tag, span, id); err != nil {
			return nil, 0, nil, err
		}
	}
	t := &l.tb.tails[i]
	return &l.rb.flows[i], t.chunks, t.refs, nil
}

// find reads the group of span span that holds flow id, and returns its
// position in the group.
func (l *lateReader) find(tag byte, span, id uint64) (int, error) {
	l.span, l.ids = 0, l.ids[:0]
	it, err := l.s.db.NewIter(&pebble.IterOptions{LowerBound: lateBlock(tag, span), UpperBound: lateBlock(tag, span+1)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		ids, ok, err := decodeLate(it.Value(), span, id, l.ids, &l.rb, &l.tb)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", FormatKey(it.Key()), err)
		}
		l.ids = ids
		if ok {
			l.tag, l.span = tag, span
			i, _ := slices.BinarySearch(ids, id)
			return i, nil
		}
	}
	if err := it.Error(); err != nil {
		return 0, err
	}
	l.ids = l.ids[:0]
	return 0, fmt.Errorf("flow %d: %w: not stored", id, errCorrupt)
}

// blockReader decodes the flows of blocks as they are asked for.
type blockReader struct {
	s    *Store
	rb   recordBlock
	ok   bool // rb holds a block
	late *lateReader
}

// flow returns flow id's record.
func (b *blockReader) flow(id uint64) (*flow.Flow, error) {
	first := blockOf(id)
	if !b.ok || b.rb.first != first {
		v, _, err := b.s.blockValue(first, false)
		if err != nil {
			return nil, err
		}
		if err := decodeRecordBlock(v, first, &b.rb); err != nil {
			return nil, fmt.Errorf("%s: %w", b.s.dir, err)
		}
		b.ok = true
	}
	if b.rb.has(id) {
		return &b.rb.flows[id-first], nil
	}
	// Not in its block: stored late or alone.
	if b.late == nil {
		b.late = &lateReader{s: b.s}
	}
	f, _, _, err := b.late.flow(id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.s.dir, err)
	}
	return f, nil
}

func (s *Store) Flows(ctx context.Context, ids []uint64, fn func(*flow.Flow) error) error {
	br := &blockReader{s: s}
	n := s.NumFlows()
	each := func(i int, id uint64) error {
		if i&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if id == 0 || id > n {
			return fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
		f, err := br.flow(id)
		if err != nil {
			return err
		}
		return fn(f)
	}
	if ids == nil {
		for id := uint64(1); id <= n; id++ {
			if err := each(int(id), id); err != nil {
				return err
			}
		}
		return nil
	}
	for i, id := range ids {
		if err := each(i, id); err != nil {
			return err
		}
	}
	return nil
}

// tailReader finds flows' postings not in full chunks. A block of tails
// is read with its block of records, whose packet counts it needs.
type tailReader struct {
	s     *Store
	first uint64
	ok    bool
	rb    recordBlock
	tb    tailBlock
	late  *lateReader
}

// tail returns flow id's full chunk count and the rest of its postings.
func (t *tailReader) tail(id uint64) (uint32, []PacketRef, error) {
	first := blockOf(id)
	if !t.ok || first != t.first {
		t.ok = false
		v, _, err := t.s.blockValue(first, false)
		if err != nil {
			return 0, nil, err
		}
		if err := decodeRecordBlock(v, first, &t.rb); err != nil {
			return 0, nil, fmt.Errorf("%s: %w", t.s.dir, err)
		}
		if v, _, err = t.s.blockValue(first, true); err != nil {
			return 0, nil, err
		}
		// A new slice each block: the refs handed out before stay valid.
		if _, err := decodeTailBlock(v, &t.rb, &t.tb, nil); err != nil {
			return 0, nil, fmt.Errorf("%s: tails %d: %w", t.s.dir, first, err)
		}
		t.first, t.ok = first, true
	}
	if !t.rb.has(id) {
		if t.late == nil {
			t.late = &lateReader{s: t.s}
		}
		_, chunks, refs, err := t.late.flow(id)
		if err != nil {
			err = fmt.Errorf("%s: %w", t.s.dir, err)
		}
		return chunks, refs, err
	}
	tl := t.tb.tails[id-first]
	return tl.chunks, tl.refs, nil
}

// PacketsOf calls fn with the records of each flow of ids (ascending),
// in the order they were read. refs is valid only during fn.
func (s *Store) PacketsOf(ctx context.Context, ids []uint64, fn func(id uint64, refs []PacketRef) error) error {
	pit, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte{tagChunk}, UpperBound: []byte{tagChunk + 1}})
	if err != nil {
		return err
	}
	defer pit.Close()
	tr := &tailReader{s: s}
	var refs []PacketRef
	for n, id := range ids {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if id == 0 || id > s.NumFlows() {
			return fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
		chunks, tail, err := tr.tail(id)
		if err != nil {
			return err
		}
		refs = refs[:0]
		// Full chunks: exactly as many as the tail says, whatever a run
		// that died after the commit left beyond them.
		if chunks > 0 {
			ok := pit.SeekGE(chunkKey{id, 0}.encode())
			for c := uint32(0); c < chunks; c++ {
				if !ok || !bytes.Equal(pit.Key(), chunkKey{id, c}.encode()) {
					return fmt.Errorf("%s: flow %d: %w: posting chunk %d missing", s.dir, id, errCorrupt, c)
				}
				if refs, err = decodeChunkBits(pit.Value(), refs); err != nil {
					return fmt.Errorf("%s: flow %d: %w", s.dir, id, err)
				}
				ok = pit.Next()
			}
		}
		refs = append(refs, tail...)
		if err := fn(id, refs); err != nil {
			return err
		}
	}
	return pit.Error()
}

// Checkpoints returns chunk n of capture i's record offsets.
func (s *Store) Checkpoints(ctx context.Context, i, n int) ([]int64, error) {
	v, err := s.get(checkpointKey{uint32(i), uint32(n)}.encode())
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%s: capture %d: no checkpoints %d", s.dir, i, n)
	}
	cnt, k := binary.Uvarint(v)
	if k <= 0 || cnt > checkpointChunk {
		return nil, fmt.Errorf("%s: capture %d: %w: checkpoints", s.dir, i, errCorrupt)
	}
	v = v[k:]
	out := make([]int64, cnt)
	var prev int64
	for j := range out {
		d, k := binary.Uvarint(v)
		if k <= 0 {
			return nil, fmt.Errorf("%s: capture %d: %w: checkpoints", s.dir, i, errCorrupt)
		}
		v = v[k:]
		prev += int64(d)
		out[j] = prev
	}
	return out, nil
}

// InCapture returns the flows with packets in capture i.
func (s *Store) InCapture(ctx context.Context, i int) ([]uint64, error) {
	if i < 0 || i >= len(s.meta.captures) {
		return nil, fmt.Errorf("no capture %d", i)
	}
	pre := binary.BigEndian.AppendUint32([]byte{tagInCapture}, uint32(i))
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: pre, UpperBound: prefixEnd(pre)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var ids []uint64
	for it.First(); it.Valid(); it.Next() {
		k, err := decodeInCaptureKey(it.Key())
		if err != nil {
			return nil, err
		}
		if ids, err = decodeIDs(it.Value(), k.first, ids); err != nil {
			return nil, fmt.Errorf("%s: %w", s.dir, err)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), it.Error()
}

// locateCapture finds an indexed capture (by its absolute path, else by
// its path relative to the index directory, for a moved archive) and
// checks that it is unchanged. A capture that only grew, its indexed
// bytes as they were, is not stale: it is still being written, and the
// index answers for what it read of it; grown is then its size now.
func locateCapture(dir string, c *CaptureInfo) (path string, grown int64, err error) {
	path = c.Path
	f, err := os.Open(path)
	if err != nil && c.RelPath != "" {
		if f2, err2 := os.Open(filepath.Join(dir, c.RelPath)); err2 == nil {
			path, f, err = filepath.Join(dir, c.RelPath), f2, nil
		}
	}
	if err != nil {
		return "", 0, fmt.Errorf("capture %s indexed in %s: %w", c.Path, dir, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if st.Size() == c.Size && st.ModTime().UnixNano() == c.ModTime {
		return path, 0, nil
	}
	// The identity hashes the size, so a capture of another size differs:
	// only one that grew is hashed, as it was at the size indexed.
	size := st.Size()
	if size < c.Size {
		return "", 0, &StaleError{Index: dir, Capture: path, OldSize: c.Size, NewSize: size}
	}
	id, err := identity(f, c.Size)
	if err != nil {
		return "", 0, err
	}
	if id != c.Identity {
		return "", 0, &StaleError{Index: dir, Capture: path, OldSize: c.Size, NewSize: size}
	}
	if size > c.Size {
		return path, size, nil
	}
	return path, 0, nil
}

// StaleError reports a capture that changed after it was indexed.
type StaleError struct {
	Index, Capture   string
	OldSize, NewSize int64
}

func (e *StaleError) Error() string {
	change := "its content changed"
	if e.OldSize != e.NewSize {
		change = fmt.Sprintf("its size changed from %d to %d bytes", e.OldSize, e.NewSize)
	}
	return fmt.Sprintf("index %s is stale: capture %s changed after it was indexed (%s)", e.Index, e.Capture, change)
}

// Usage estimates the disk space of each kind of key (by tag: F, P, A...),
// for docs/index.md's accounting of what an index holds.
func (s *Store) Usage() (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, tag := range []byte{tagMeta, tagCapture, tagCheckpoint, tagFlows, tagTails, tagFlowsProv, tagTailsProv,
		tagLate, tagLateProv, tagChunk, tagList, tagFinalList, tagAddr, tagInCapture, tagState, tagResume} {
		if s.full == nil {
			return nil, errors.New("disk usage of a snapshot")
		}
		n, err := s.full.EstimateDiskUsage([]byte{tag}, []byte{tag + 1})
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out[string(tag)] = n
		}
	}
	return out, nil
}

// RawSizes sums the keys and values of each kind of key, uncompressed.
func (s *Store) RawSizes() (map[string][2]uint64, error) {
	out := map[string][2]uint64{}
	it, err := s.db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		t := string(it.Key()[:1])
		v := out[t]
		v[0]++
		v[1] += uint64(len(it.Key()) + len(it.Value()))
		out[t] = v
	}
	return out, it.Error()
}

// ListSizes sums the A keys by field, raw.
func (s *Store) ListSizes() map[string][2]uint64 {
	out := map[string][2]uint64{}
	it, _ := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagList}, UpperBound: []byte{tagList + 1}})
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		f := Field(it.Key()[1]).String()
		v := out[f]
		v[0]++
		v[1] += uint64(len(it.Key()) + len(it.Value()))
		out[f] = v
	}
	return out
}

// Live reports whether flow id's connection was still open at the last
// commit: its record may change when captures are added.
func (s *Store) Live(id uint64) bool {
	live, err := s.liveIDs()
	if err != nil {
		return true // unknown: say its record may change
	}
	_, ok := slices.BinarySearch(live, id)
	return ok
}

// GrownError describes a capture that grew after it was indexed: a
// warning, not a failure. The index answers for its first OldSize bytes;
// the ones after are in no answer, because a capture is read once: it
// cannot be added to, and what follows it in the archive may already be
// indexed.
type GrownError struct {
	Capture          string
	OldSize, NewSize int64
}

func (e *GrownError) Error() string {
	return fmt.Sprintf("%s: grew from %d to %d bytes after it was indexed (it was still being written): the index answers for its first %d bytes, and the %d after them are in no answer",
		e.Capture, e.OldSize, e.NewSize, e.OldSize, e.NewSize-e.OldSize)
}
