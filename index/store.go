package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pcapflow/pcapflow/flow"
)

// Store is an index on disk, opened read-only. It is safe for concurrent
// use, and several processes may open one index at the same time.
type Store struct {
	dir      string
	db       *pebble.DB
	lock     *os.File
	captures []CaptureInfo
	nflows   uint64
	pathMu   sync.Mutex
	paths    []string // located capture files, by capture index ("" until checked)
}

// ErrIncomplete means the index was being written when its writer stopped.
var ErrIncomplete = errors.New("incomplete index: its ingest did not finish (killed or failed)")

// Open opens the index in dir for reading. It refuses an index whose
// ingest did not complete and one of another schema version; call Check
// to also verify that the captures did not change.
func Open(dir string) (*Store, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	incomplete := fmt.Errorf("%s: %w; re-run 'pcapflow index -i %s CAPTURE...' to finish it", dir, ErrIncomplete, dir)
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		return nil, incomplete // the writer died right after making the directory
	}
	db, lf, err := openLocked(dir, false)
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		return nil, incomplete // ... or after taking the lock, before the store existed
	}
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, db: db, lock: lf}
	fail := func(err error) (*Store, error) {
		s.Close()
		return nil, err
	}
	version, err := getMeta(db, metaVersion)
	if err != nil {
		return fail(err)
	}
	if version == "" {
		// Build writes the version with the first state marker; without
		// it, nothing the writer did was made durable.
		return fail(incomplete)
	}
	if version != SchemaVersion {
		return fail(fmt.Errorf("%s: index schema %q, this pcapflow reads %q; rebuild it (remove the directory and run index again)", dir, version, SchemaVersion))
	}
	if state, _ := getMeta(db, metaState); state != "complete" {
		return fail(incomplete)
	}
	caps, next, err := readCommitted(db)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", dir, err))
	}
	s.captures, s.nflows = caps, next-1
	s.paths = make([]string, len(caps))
	return s, nil
}

// Dir is the index directory.
func (s *Store) Dir() string { return s.dir }

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
	return err
}

func (s *Store) Captures() []CaptureInfo { return s.captures }
func (s *Store) NumFlows() uint64        { return s.nflows }

// Check verifies that every indexed capture is where it was and did not
// change. A changed capture gives a *StaleError.
func (s *Store) Check() error {
	for i := range s.captures {
		if _, err := s.CapturePath(i); err != nil {
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
	p, err := locateCapture(s.dir, &s.captures[i])
	if err != nil {
		return "", err
	}
	s.paths[i] = p
	return p, nil
}

// blockOf finds the key of the block (tag F or Q) that holds flow id.
func (s *Store) blockOf(it *pebble.Iterator, tag byte, id uint64) (first uint64, val []byte, err error) {
	if !it.SeekLT(blockKey(tag, id+1)) || it.Key()[0] != tag {
		return 0, nil, fmt.Errorf("flow %d: %w", id, ErrNoFlow)
	}
	first = binary.BigEndian.Uint64(it.Key()[1:])
	if id-first >= flowBlock {
		return 0, nil, fmt.Errorf("flow %d: %w", id, ErrNoFlow)
	}
	return first, it.Value(), nil
}

func (s *Store) Flows(ctx context.Context, ids []uint64, fn func(*flow.Flow) error) error {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte{tagFlows}, UpperBound: []byte{tagFlows + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	var f flow.Flow
	d := &recordDecoder{}
	if ids == nil {
		for ok := it.First(); ok; ok = it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			first := binary.BigEndian.Uint64(it.Key()[1:])
			d.start(it.Value(), first)
			for i := uint64(0); d.more(); i++ {
				if err := d.next(&f); err != nil {
					return fmt.Errorf("%s: flow %d: %w", s.dir, first+i, err)
				}
				if err := fn(&f); err != nil {
					return err
				}
			}
			if d.err != nil {
				return fmt.Errorf("%s: block %d: %w", s.dir, first, d.err)
			}
		}
		return it.Error()
	}
	var (
		curFirst uint64
		cur      []byte
		pos      uint64
	)
	for n, id := range ids {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if id == 0 || id > s.nflows {
			return fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
		// Blocks hold up to flowBlock flows, but a capture's last block
		// may hold fewer: reload when id is behind us or past the block.
		if cur == nil || id < curFirst+pos || id >= curFirst+flowBlock || (!d.more() && curFirst+pos <= id) {
			first, val, err := s.blockOf(it, tagFlows, id)
			if err != nil {
				return err
			}
			curFirst, cur = first, slices.Clone(val)
			d.start(cur, first)
			pos = 0
		}
		for ; curFirst+pos <= id; pos++ {
			if !d.more() {
				first, val, err := s.blockOf(it, tagFlows, id)
				if err != nil {
					return err
				}
				if first == curFirst {
					return fmt.Errorf("%s: flow %d: %w", s.dir, id, errCorrupt)
				}
				curFirst, cur = first, slices.Clone(val)
				d.start(cur, first)
				pos = 0
			}
			if err := d.next(&f); err != nil {
				return fmt.Errorf("%s: flow %d: %w", s.dir, id, err)
			}
		}
		if err := fn(&f); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) Packets(id uint64, out []PacketRef) ([]PacketRef, error) {
	if id == 0 || id > s.nflows {
		return out, fmt.Errorf("flow %d: %w", id, ErrNoFlow)
	}
	start := len(out)
	pre := chunkPrefix(id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: pre, UpperBound: append(slices.Clone(pre), 0xff, 0xff, 0xff, 0xff, 0xff)})
	if err != nil {
		return out, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if out, err = decodeChunk(it.Value(), out); err != nil {
			it.Close()
			return out, fmt.Errorf("%s: flow %d: %w", s.dir, id, err)
		}
	}
	if err := it.Close(); err != nil {
		return out, err
	}
	it, err = s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagTails}, UpperBound: []byte{tagTails + 1}})
	if err != nil {
		return out, err
	}
	defer it.Close()
	first, val, err := s.blockOf(it, tagTails, id)
	if err != nil {
		return out, err
	}
	for i := first; ; i++ {
		l, k := binary.Uvarint(val)
		if k <= 0 || uint64(len(val)-k) < l {
			return out, fmt.Errorf("%s: flow %d: %w", s.dir, id, errCorrupt)
		}
		if i == id {
			out, err = decodeChunk(val[k:k+int(l)], out)
			if err != nil {
				return out, fmt.Errorf("%s: flow %d: %w", s.dir, id, err)
			}
			break
		}
		val = val[k+int(l):]
	}
	sortRefs(out[start:])
	return out, nil
}

// Lookup reads the attribute lists of l's range and unites them.
func (s *Store) Lookup(ctx context.Context, l Lookup) ([]uint64, bool, error) {
	if isAddrField(l.Field) {
		ids, _, err := s.lookupAddr(ctx, l, false)
		return ids, true, err
	}
	lo, hi, exact, err := lookupRange(&l)
	if err != nil {
		return nil, false, err
	}
	pre := attrPrefix(l.Field)
	lower := append(slices.Clone(pre), lo...)
	upper := append(append(slices.Clone(pre), hi...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var ids []uint64
	runs := 0
	var last uint64
	sorted := true
	for ok := it.First(); ok; ok = it.Next() {
		v, first := splitAttrKey(it.Key())
		if len(v) != len(lo) || bytes.Compare(v, lo) < 0 || bytes.Compare(v, hi) > 0 {
			continue // another width (IPv6 under an IPv4 range) or beyond the range
		}
		n := len(ids)
		ids, err = decodeIDs(it.Value(), first, ids)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", s.dir, err)
		}
		if n > 0 && len(ids) > n && ids[n] <= last {
			sorted = false
		}
		if len(ids) > 0 {
			last = ids[len(ids)-1]
		}
		runs++
	}
	if err := it.Error(); err != nil {
		return nil, false, err
	}
	if !sorted {
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	return ids, exact, nil
}

// lookupRange turns a lookup into the range of attribute values to read
// and says whether the values decide the lookup exactly.
func lookupRange(l *Lookup) (lo, hi []byte, exact bool, err error) {
	switch l.Field {
	case FieldSrcAddr, FieldDstAddr:
		return addrValue(l.AddrLo), addrValue(l.AddrHi), true, nil
	case FieldSrcPort, FieldDstPort, FieldVLAN:
		if l.Hi > 0xffff {
			l.Hi = 0xffff
		}
		return u16Value(uint16(l.Lo)), u16Value(uint16(l.Hi)), true, nil
	case FieldProto:
		return []byte{byte(min(l.Lo, 255))}, []byte{byte(min(l.Hi, 255))}, true, nil
	case FieldSrcMAC, FieldDstMAC:
		return l.MAC[:], l.MAC[:], true, nil
	case FieldFirst, FieldLast:
		return timeValue(int64(l.Lo)), timeValue(int64(l.Hi)), false, nil
	case FieldPackets, FieldBytes:
		return log2Value(l.Lo), log2Value(l.Hi), false, nil
	case FieldCommunity:
		v := communityValue(l.Community)
		return v, v, false, nil
	case FieldTunnel:
		return []byte{byte(min(l.Lo, 255))}, []byte{byte(min(l.Hi, 255))}, true, nil
	case FieldTunnelID:
		return binary.BigEndian.AppendUint32(nil, uint32(min(l.Lo, 1<<32-1))), binary.BigEndian.AppendUint32(nil, uint32(min(l.Hi, 1<<32-1))), true, nil
	}
	return nil, nil, false, fmt.Errorf("unknown lookup field %d", l.Field)
}

// Estimate returns how many flows a lookup would return (at most),
// reading only the counts at the head of each ID list: a cheap way for a
// planner to order lookups.
func (s *Store) Estimate(ctx context.Context, l Lookup) (uint64, error) {
	if isAddrField(l.Field) {
		_, n, err := s.lookupAddr(ctx, l, true)
		return n, err
	}
	lo, hi, _, err := lookupRange(&l)
	if err != nil {
		return 0, err
	}
	pre := attrPrefix(l.Field)
	lower := append(slices.Clone(pre), lo...)
	upper := append(append(slices.Clone(pre), hi...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n uint64
	for ok := it.First(); ok; ok = it.Next() {
		v, _ := splitAttrKey(it.Key())
		if len(v) != len(lo) {
			continue
		}
		c, k := binary.Uvarint(it.Value())
		if k > 0 {
			n += c
		}
	}
	return n, it.Error()
}

// lookupAddr reads the address blocks covering [AddrLo, AddrHi]. With
// estimate set it decodes nothing and returns an upper bound of the
// pairs in range instead.
func (s *Store) lookupAddr(ctx context.Context, l Lookup, estimate bool) ([]uint64, uint64, error) {
	lo, hi := addrValue(l.AddrLo), addrValue(l.AddrHi)
	if lo[0] != hi[0] {
		return nil, 0, fmt.Errorf("address range %v-%v mixes IPv4 and IPv6", l.AddrLo, l.AddrHi)
	}
	alen := len(lo) - 1
	var ids []uint64
	var n uint64
	for _, c := range s.captures {
		pre := addrCapturePrefix(l.Field, alen, c.FirstID)
		it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: pre, UpperBound: addrCapturePrefix(l.Field, alen, c.FirstID+1)})
		if err != nil {
			return nil, 0, err
		}
		start := binary.BigEndian.AppendUint64(append(slices.Clone(pre), lo[1:]...), 0)
		ok := it.SeekLT(start)
		if !ok {
			ok = it.First()
		}
		for blocks := 0; ok; ok = it.Next() {
			first := it.Key()[len(pre) : len(pre)+alen]
			if string(first) > string(hi[1:]) {
				break
			}
			blocks++
			if estimate && blocks > 2 {
				n += addrBlock // a wide range: count whole blocks
				continue
			}
			var past bool
			mark := len(ids)
			ids, past, err = decodeAddrBlock(it.Value(), alen, lo[1:], hi[1:], ids)
			if estimate {
				n += uint64(len(ids) - mark)
				ids = ids[:mark]
			}
			if err != nil {
				it.Close()
				return nil, 0, fmt.Errorf("%s: %w", s.dir, err)
			}
			if past {
				break
			}
		}
		if err := it.Close(); err != nil {
			return nil, 0, err
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), n, nil
}

// PacketsOf calls fn with the records of each flow of ids (ascending), in
// capture order. It walks the posting keys once, so it costs far less
// than Packets per flow when many flows are wanted. refs is valid only
// during fn.
func (s *Store) PacketsOf(ctx context.Context, ids []uint64, fn func(id uint64, refs []PacketRef) error) error {
	pit, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte{tagChunk}, UpperBound: []byte{tagChunk + 1}})
	if err != nil {
		return err
	}
	defer pit.Close()
	qit, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte{tagTails}, UpperBound: []byte{tagTails + 1}})
	if err != nil {
		return err
	}
	defer qit.Close()
	var (
		refs   []PacketRef
		pValid = pit.First()
		tails  [][]byte // the current Q block's chunks, by position
		tFirst uint64
		haveQ  bool
		pKeyID = func() uint64 { return binary.BigEndian.Uint64(pit.Key()[1:9]) }
	)
	for n, id := range ids {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if id == 0 || id > s.nflows {
			return fmt.Errorf("flow %d: %w", id, ErrNoFlow)
		}
		refs = refs[:0]
		// Full chunks: the cursor only moves forward; it seeks when the
		// wanted flow is beyond it.
		if pValid && pKeyID() < id {
			pValid = pit.SeekGE(chunkPrefix(id))
		}
		for pValid && pKeyID() == id {
			if refs, err = decodeChunk(pit.Value(), refs); err != nil {
				return fmt.Errorf("%s: flow %d: %w", s.dir, id, err)
			}
			pValid = pit.Next()
		}
		// The tail, from the flow's block of chunks.
		if !haveQ || id < tFirst || id-tFirst >= uint64(len(tails)) {
			first, val, err := s.blockOf(qit, tagTails, id)
			if err != nil {
				return err
			}
			tFirst, haveQ = first, true
			tails = tails[:0]
			for len(val) > 0 {
				l, k := binary.Uvarint(val)
				if k <= 0 || uint64(len(val)-k) < l {
					return fmt.Errorf("%s: flow %d: %w", s.dir, id, errCorrupt)
				}
				tails = append(tails, val[k:k+int(l)])
				val = val[k+int(l):]
			}
			if id-tFirst >= uint64(len(tails)) {
				return fmt.Errorf("%s: flow %d: %w", s.dir, id, errCorrupt)
			}
		}
		if refs, err = decodeChunk(tails[id-tFirst], refs); err != nil {
			return fmt.Errorf("%s: flow %d: %w", s.dir, id, err)
		}
		sortRefs(refs)
		if err := fn(id, refs); err != nil {
			return err
		}
	}
	return nil
}
