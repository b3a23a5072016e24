package index

import (
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pcapflow/pcapflow/pcapio"
)

// SetKillPoint makes Build call f at its named points; a test that exits
// there simulates a killed index run.
func SetKillPoint(f func(string)) { killPoint = f }

// SetFS makes Build write the store through fs (fault injection).
func SetFS(o *Options, fs vfs.FS) { o.fs = fs }

// SetMemTable makes Build's store flush its memtable every n bytes, so
// that a small capture goes through the flushes a large one does.
func SetMemTable(o *Options, n int) { o.memtable = n }

// SetGzipEvery sets the spacing of gzip checkpoints, so that a small
// capture gets many.
func SetGzipEvery(o *Options, n int64) { o.gzEvery = n }

// SetEndFlush makes Build write the final-value lists every n IDs, so
// that a small capture goes through the flushes a large one does.
func SetEndFlush(o *Options, n int) { o.endFlush = n }

// SetMappedFlush makes Build write the lists of VLANs, MACs and tunnel
// IDs once they hold n IDs.
func SetMappedFlush(o *Options, n int) { o.mapFlush = n }

// SetLateFlush makes Build write the groups of flows stored late once
// it holds n such flows.
func SetLateFlush(o *Options, n int) { o.lateFlush = n }

// StoredLate is how many flows s stores in groups of flows that outlived
// their blocks (L keys), in how many groups, and how many such flows live
// at the commit it stores (N keys).
func StoredLate(s *Store) (flows, groups, alone int) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagLate}, UpperBound: []byte{tagLateProv + 1}})
	if err != nil {
		return -1, -1, -1
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if it.Key()[0] == tagMeta { // between L and N
			continue
		}
		k, err := decodeLateGroupKey(it.Key())
		var rb recordBlock
		var tb tailBlock
		ids, _, derr := decodeLate(it.Value(), k.span, 0, nil, &rb, &tb)
		if err != nil || derr != nil {
			return -1, -1, -1
		}
		if k.tag == tagLateProv {
			alone += len(ids)
			continue
		}
		flows += len(ids)
		groups++
	}
	return flows, groups, alone
}

// ResumePoints lists capture i's gzip checkpoints.
func ResumePoints(s *Store, i int) ([]pcapio.GzipCheckpoint, error) {
	var out []pcapio.GzipCheckpoint
	for off := int64(1 << 62); ; {
		p, err := s.ResumePoint(context.Background(), i, off)
		if err != nil || p.Sums == nil {
			return out, err
		}
		out = append(out, p)
		if p.Out == 0 {
			return out, nil
		}
		off = p.Out - 1
	}
}

// Every test of the package checks that what a commit takes as unchanged
// is.
func init() { verifyUnchanged = true }

// SetVerifyUnchanged turns that check off, to test what users run.
func SetVerifyUnchanged(on bool) { verifyUnchanged = on }

// Kept is how many provisional values the run left as they were, because
// it would have written them unchanged.
func Kept(r *BuildResult) int { return r.kept }

// Levels is how many tables each level of w's store holds, and how many
// compactions are running in it.
func (w *Writer) Levels() (tables [7]int64, compacting int64) {
	m := w.db.Metrics()
	for i := range tables {
		tables[i] = m.Levels[i].TablesCount
	}
	return tables, m.Compact.NumInProgress
}

// SetStoredVersion overwrites the schema version a closed index records,
// as another pcapflow wrote it.
func SetStoredVersion(dir, v string) error {
	db, err := pebble.Open(dir, pebbleOptions(false, vfs.Default, nil))
	if err != nil {
		return err
	}
	// The store has no WAL: the write lasts once it is flushed.
	if err := db.Set(metaVersion.encode(), []byte(v), pebble.NoSync); err != nil {
		db.Close()
		return err
	}
	if err := db.Flush(); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}

// IdentityBytes is how much of each end of a capture its identity hashes.
const IdentityBytes = identityBytes

// Compressions counts w's store's tables by the compression they were
// written with ("NoCompression" for raw ones), and says whether the
// writer ever wrote a level-0 table raw.
func (w *Writer) Compressions() (map[string]int, bool, error) {
	levels, err := w.db.SSTables(pebble.WithProperties())
	if err != nil {
		return nil, false, err
	}
	out := map[string]int{}
	for _, tables := range levels {
		for _, t := range tables {
			out[t.Properties.CompressionName]++
		}
	}
	return out, w.raw.wrote.Load(), nil
}

// DamageLive damages what a closed index's last commit holds of its live
// flows, as a failing disk or a stray writer might: "records" deletes
// every provisional record block (G) and group (N), "tails" the middle
// provisional tail block (R), "state" halves the table's live state and
// "state-end" cuts its last bytes (those after the flows' IDs).
func DamageLive(dir, what string) error {
	db, err := pebble.Open(dir, pebbleOptions(false, vfs.Default, nil))
	if err != nil {
		return err
	}
	defer db.Close()
	b := db.NewBatch()
	switch what {
	case "records":
		b.DeleteRange([]byte{tagFlowsProv}, []byte{tagFlowsProv + 1}, nil)
		b.DeleteRange([]byte{tagLateProv}, []byte{tagLateProv + 1}, nil)
	case "tails":
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagTailsProv}, UpperBound: []byte{tagTailsProv + 1}})
		if err != nil {
			return err
		}
		var keys [][]byte
		for it.First(); it.Valid(); it.Next() {
			keys = append(keys, slices.Clone(it.Key()))
		}
		it.Close()
		if len(keys) > 0 {
			b.Delete(keys[len(keys)/2], nil)
		}
	case "state", "state-end":
		v, c, err := db.Get(stateKey(0).encode())
		if err != nil {
			return err
		}
		n := len(v) / 2
		if what == "state-end" {
			n = len(v) - 16
		}
		b.Set(stateKey(0).encode(), slices.Clone(v[:n]), nil)
		c.Close()
	default:
		return fmt.Errorf("DamageLive: %q", what)
	}
	if b.Empty() {
		return fmt.Errorf("DamageLive %q: nothing to damage", what)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return db.Flush()
}
