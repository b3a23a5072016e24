package index

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pcapflow/pcapflow/flow"
)

// BuildResult reports what Build did.
type BuildResult struct {
	Added   []CaptureInfo // captures indexed by this run
	Skipped []string      // captures already in the index
	Errors  []error       // captures that could not be (fully) read
}

// Build creates the index in dir, or adds to it the captures it does not
// hold yet (matched by absolute path). Flow IDs continue from the index's
// last flow. A capture that can be read only in part is indexed up to the
// damage and its error is reported in the result; one that cannot be read
// at all is left out.
//
// Durability: the store is written without a WAL. Build first persists
// the state "building", then the data, then the capture records and the
// state "complete", each step made durable by a flush. An index whose
// state is not "complete" is refused by Open; the next Build removes the
// uncommitted part and goes on.
func Build(ctx context.Context, dir string, paths []string, opts Options) (*BuildResult, error) {
	db, lf, err := openLocked(dir, true)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	b := &builder{writer: writer{db: db}, dir: dir, opts: &opts}
	res, err := b.run(ctx, paths)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

// batchSize is how much a write batch collects before it is committed.
const batchSize = 16 << 20

type builder struct {
	writer
	dir  string
	opts *Options
	buf  []byte
}

// writer batches writes to the store; each goroutine that writes has
// its own.
type writer struct {
	db    *pebble.DB
	batch *pebble.Batch
}

// KillPoint, when set (by tests), is called at named points of Build;
// a test that panics or exits there simulates a killed ingest.
var KillPoint func(point string)

func killPoint(p string) {
	if KillPoint != nil {
		KillPoint(p)
	}
}

func (b *writer) flush() error {
	if err := b.commit(); err != nil {
		return err
	}
	return b.db.Flush()
}

func (b *writer) commit() error {
	if b.batch == nil || b.batch.Empty() {
		return nil
	}
	err := b.batch.Commit(pebble.NoSync)
	b.batch.Close()
	b.batch = nil
	return err
}

func (b *writer) set(k, v []byte) error {
	if b.batch == nil {
		b.batch = b.db.NewBatchWithSize(batchSize + batchSize/4)
	}
	if err := b.batch.Set(k, v, nil); err != nil {
		return err
	}
	if b.batch.Len() > batchSize {
		return b.commit()
	}
	return nil
}

func (b *builder) setMeta(name, v string) error { return b.set(metaKey(name), []byte(v)) }

func (b *builder) run(ctx context.Context, paths []string) (*BuildResult, error) {
	res := &BuildResult{}
	version, err := getMeta(b.db, metaVersion)
	if err != nil {
		return nil, err
	}
	switch version {
	case "":
		if err := b.setMeta(metaVersion, SchemaVersion); err != nil {
			return nil, err
		}
	case SchemaVersion:
	default:
		return nil, fmt.Errorf("%s: index schema %q, this pcapflow writes %q; rebuild it (remove the directory and run index again)", b.dir, version, SchemaVersion)
	}
	captures, nextID, err := readCommitted(b.db)
	if err != nil {
		return nil, err
	}
	state, _ := getMeta(b.db, metaState)
	if state != "complete" && version != "" {
		// A previous ingest died: drop what it wrote after the last commit.
		if err := b.dropUncommitted(len(captures), nextID); err != nil {
			return nil, err
		}
	}
	if err := b.setMeta(metaState, "building"); err != nil {
		return nil, err
	}
	if err := b.flush(); err != nil {
		return nil, err
	}
	known := map[string]*CaptureInfo{}
	for i := range captures {
		known[captures[i].Path] = &captures[i]
	}
	for _, p := range paths {
		if p == "-" {
			return res, fmt.Errorf("standard input cannot be indexed (it cannot be read again for extraction); save it to a file first")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return res, err
		}
		if c, ok := known[abs]; ok {
			if err := checkCapture(b.dir, c); err != nil {
				return res, err
			}
			res.Skipped = append(res.Skipped, p)
			continue
		}
		info, err := b.addCapture(ctx, p, len(captures), nextID)
		if errors.Is(err, context.Canceled) {
			return res, err
		}
		if err != nil {
			res.Errors = append(res.Errors, err)
		}
		if info == nil {
			continue
		}
		if rel, rerr := filepath.Rel(b.dir, info.Path); rerr == nil {
			info.RelPath = rel
		}
		captures = append(captures, *info)
		known[info.Path] = &captures[len(captures)-1]
		res.Added = append(res.Added, *info)
		nextID += info.Flows
	}
	killPoint("data-written")
	if err := b.flush(); err != nil {
		return res, err
	}
	killPoint("data-flushed")
	for i, c := range captures {
		v, err := json.Marshal(c)
		if err != nil {
			return res, err
		}
		if err := b.set(captureKey(i), v); err != nil {
			return res, err
		}
	}
	if err := b.setMeta(metaNextID, strconv.FormatUint(nextID, 10)); err != nil {
		return res, err
	}
	if err := b.setMeta(metaCaptures, strconv.Itoa(len(captures))); err != nil {
		return res, err
	}
	if err := b.setMeta(metaState, "complete"); err != nil {
		return res, err
	}
	if err := b.flush(); err != nil {
		return res, err
	}
	killPoint("committed")
	return res, nil
}

// readCommitted returns the committed captures and the next flow ID.
func readCommitted(db *pebble.DB) ([]CaptureInfo, uint64, error) {
	n, _ := getMeta(db, metaCaptures)
	next, _ := getMeta(db, metaNextID)
	nc, _ := strconv.Atoi(n)
	nextID, _ := strconv.ParseUint(next, 10, 64)
	if nextID == 0 {
		nextID = 1
	}
	var out []CaptureInfo
	for i := 0; i < nc; i++ {
		v, c, err := db.Get(captureKey(i))
		if err != nil {
			return nil, 0, fmt.Errorf("capture record %d: %w", i, err)
		}
		var ci CaptureInfo
		err = json.Unmarshal(v, &ci)
		c.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("capture record %d: %w", i, err)
		}
		out = append(out, ci)
	}
	return out, nextID, nil
}

// dropUncommitted deletes every key an interrupted ingest may have
// written: capture records from ncap on, flows from nextID on, and
// attribute lists starting at nextID or later.
func (b *builder) dropUncommitted(ncap int, nextID uint64) error {
	del := func(lo, hi []byte) error {
		if b.batch == nil {
			b.batch = b.db.NewBatch()
		}
		return b.batch.DeleteRange(lo, hi, nil)
	}
	if err := del(captureKey(ncap), []byte{tagCapture + 1}); err != nil {
		return err
	}
	for _, tag := range []byte{tagFlows, tagTails, tagChunk} {
		if err := del(blockKey(tag, nextID), []byte{tag + 1}); err != nil {
			return err
		}
	}
	it, err := b.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagAttr}, UpperBound: []byte{tagAttr + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if _, first := splitAttrKey(it.Key()); first >= nextID {
			if b.batch == nil {
				b.batch = b.db.NewBatch()
			}
			if err := b.batch.Delete(it.Key(), nil); err != nil {
				it.Close()
				return err
			}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	return b.flush()
}

// addCapture reads one capture and writes its flows, postings and
// attribute lists.
func (b *builder) addCapture(ctx context.Context, path string, capIdx int, firstID uint64) (*CaptureInfo, error) {
	var posts postingTable
	var werr error
	var sl slab
	sink := func(fi int32, off int64, length int32) {
		p := posts.at(int(fi))
		p.add(off, length, &sl)
		if p.n == ChunkSize {
			b.buf = p.chunk(b.buf[:0])
			if err := b.set(chunkKey(firstID+uint64(fi), p.chunks), b.buf); err != nil && werr == nil {
				werr = err
			}
			p.chunks++
		}
	}
	info, t, err := readCapture(ctx, path, nil, capIdx, firstID, b.opts, sink)
	if werr != nil {
		return nil, werr
	}
	if t == nil || (err != nil && info.Packets == 0) {
		return nil, err
	}
	if werr := b.writeFlows(t, firstID, &posts); werr != nil {
		return nil, werr
	}
	killPoint("capture-written")
	return info, err
}

// writeFlows writes the flow records and posting tails of a finished
// table while another goroutine builds and writes its attribute keys.
func (b *builder) writeFlows(t *flow.Table, firstID uint64, posts *postingTable) error {
	n := t.Len()
	attrErr := make(chan error, 1)
	go func() {
		w := &writer{db: b.db}
		attrs := newAttrBuilder(w, firstID, n)
		var err error
		for i := 0; i < n && err == nil; i++ {
			err = attrs.add(t.Flow(int32(i)))
		}
		if err == nil {
			err = attrs.finish()
		}
		if err == nil {
			err = w.commit()
		}
		attrErr <- err
	}()
	var tails []byte
	var err error
	enc := &blockEncoder{}
	for start := 0; start < n && err == nil; start += flowBlock {
		end := min(start+flowBlock, n)
		enc.reset(firstID+uint64(start), t.Flow(int32(start)).Capture)
		tails = tails[:0]
		for i := start; i < end; i++ {
			enc.add(t.Flow(int32(i)))
			mark := len(tails)
			tails = append(tails, 0)
			tails = posts.at(i).chunk(tails)
			// Length-prefix the chunk; it is nearly always under 128 bytes.
			if l := len(tails) - mark - 1; l < 128 {
				tails[mark] = byte(l)
			} else {
				chunk := append([]byte(nil), tails[mark+1:]...)
				tails = binary.AppendUvarint(tails[:mark], uint64(l))
				tails = append(tails, chunk...)
			}
		}
		err = b.set(blockKey(tagFlows, firstID+uint64(start)), enc.b)
		if err == nil {
			err = b.set(blockKey(tagTails, firstID+uint64(start)), tails)
		}
	}
	if aerr := <-attrErr; err == nil {
		err = aerr
	}
	return err
}

// checkCapture verifies that a capture still is what was indexed.
func checkCapture(dir string, c *CaptureInfo) error {
	_, err := locateCapture(dir, c)
	return err
}

// locateCapture finds an indexed capture (by its absolute path, else by
// its path relative to the index directory, for a moved archive) and
// checks that it is unchanged.
func locateCapture(dir string, c *CaptureInfo) (string, error) {
	path := c.Path
	f, err := os.Open(path)
	if err != nil && c.RelPath != "" {
		if f2, err2 := os.Open(filepath.Join(dir, c.RelPath)); err2 == nil {
			path, f, err = filepath.Join(dir, c.RelPath), f2, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("capture %s indexed in %s: %w", c.Path, dir, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.Size() == c.Size && st.ModTime().UnixNano() == c.ModTime {
		return path, nil
	}
	size, _, id, err := Identify(f)
	if err != nil {
		return "", err
	}
	if id != c.Identity {
		return "", &StaleError{Index: dir, Capture: path, OldSize: c.Size, NewSize: size}
	}
	return path, nil
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
	return fmt.Sprintf("index %s is stale: capture %s changed after it was indexed (%s); rebuild it: rm -r %s && pcapflow index -i %s ...",
		e.Index, e.Capture, change, e.Index, e.Index)
}

// postingTable holds the posting buffer of each flow of a capture being
// ingested, in fixed-size chunks: a million flows' buffers are never
// copied to grow the table (that was 5% of the ingest).
type postingTable struct {
	chunks [][]ingestPosting
}

// ingestPosting is a flow's current chunk and how many full chunks of it
// were written already.
type ingestPosting struct {
	postingBuf
	chunks uint32
}

const postingTableBits = 12

// at returns flow i's buffer, making room for it.
func (t *postingTable) at(i int) *ingestPosting {
	for i>>postingTableBits >= len(t.chunks) {
		t.chunks = append(t.chunks, make([]ingestPosting, 1<<postingTableBits))
	}
	return &t.chunks[i>>postingTableBits][i&(1<<postingTableBits-1)]
}
