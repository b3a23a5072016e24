package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pcapflow/pcapflow/flow"
)

// valueRange turns a lookup into the range of list values to read and
// says whether the values decide it exactly.
func valueRange(l *Lookup) (lo, hi []byte, exact bool, err error) {
	switch l.Field {
	case FieldSrcPort, FieldDstPort, FieldVLAN:
		return u16Value(uint16(min(l.Lo, 0xffff))), u16Value(uint16(min(l.Hi, 0xffff))), true, nil
	case FieldProto, FieldTunnel:
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
	case FieldTunnelID:
		return binary.BigEndian.AppendUint32(nil, uint32(min(l.Lo, 1<<32-1))), binary.BigEndian.AppendUint32(nil, uint32(min(l.Hi, 1<<32-1))), true, nil
	}
	return nil, nil, false, fmt.Errorf("unknown lookup field %d", l.Field)
}

// listIter iterates the list keys of a field whose values lie in
// [lo, hi], calling fn with each committed key and its value.
func (s *Store) listIter(ctx context.Context, f Field, lo, hi []byte, fn func(k listKey, v []byte) error) error {
	pre := listKey{final: finalField(f), field: f}.prefix()
	lower := append(slices.Clone(pre), lo...)
	upper := prefixEnd(append(slices.Clone(pre), hi...))
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	w := fieldWidth(f)
	for ok := it.First(); ok; ok = it.Next() {
		k, err := decodeListKey(it.Key(), w)
		if err != nil {
			return fmt.Errorf("%s: %w", s.dir, err)
		}
		if bytes.Compare(k.value, lo) < 0 || bytes.Compare(k.value, hi) > 0 {
			continue
		}
		if k.final && k.gen > s.meta.gen {
			continue // written by a run that did not commit
		}
		if !k.final && k.first >= s.meta.nextID {
			continue
		}
		if err := fn(k, it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// Lookup reads the lists of l's range and unites them.
func (s *Store) Lookup(ctx context.Context, l Lookup) ([]uint64, bool, error) {
	m, ok := mirror(l)
	either := ok && l.Either
	ids, exact, err := s.lookupListed(ctx, l)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return ids, exact, nil
	}
	// Paired responders are listed under their originator only: they are
	// the flows after those whose mirrored field is in range.
	orig, mexact, err := s.lookupListed(ctx, m)
	if err != nil {
		return nil, false, err
	}
	if either {
		// Either direction: the flows listed under either, and the
		// responders paired with any of them.
		ids = UnionIDs(ids, orig)
		orig, exact = ids, exact && mexact
	}
	more, err := s.pairedAfter(ctx, orig)
	if err != nil {
		return nil, false, err
	}
	return UnionIDs(ids, more), exact, nil
}

// UnionIDs merges two ascending ID lists without duplicates, in
// O(len(a)+len(b)) (sorting the two appended was most of a broad
// lookup's time: 1.5 M IDs for port 80 on the 2 GB real capture). It
// may return a or b itself.
func UnionIDs(a, b []uint64) []uint64 {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make([]uint64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// mirrorOf pairs each field with the other direction's.
var mirrorOf = [numFields]Field{
	FieldSrcAddr: FieldDstAddr, FieldDstAddr: FieldSrcAddr,
	FieldSrcPort: FieldDstPort, FieldDstPort: FieldSrcPort,
	FieldSrcMAC: FieldDstMAC, FieldDstMAC: FieldSrcMAC,
}

// mirrorField is the other direction's field of an address, port or
// MAC field; ok is false for the others.
func mirrorField(f Field) (m Field, ok bool) {
	if f >= numFields || mirrorOf[f] == 0 {
		return 0, false
	}
	return mirrorOf[f], true
}

// mirror is the lookup that finds a paired responder's originator: the
// other direction's address, port or MAC.
func mirror(l Lookup) (Lookup, bool) {
	m, ok := mirrorField(l.Field)
	if !ok {
		return l, false
	}
	l.Field, l.Either = m, false
	return l, true
}

// pairedAfter returns the flows o+1, for o in orig (ascending), that are
// in the paired list: responders whose originator is o.
func (s *Store) pairedAfter(ctx context.Context, orig []uint64) ([]uint64, error) {
	if len(orig) == 0 {
		return nil, nil
	}
	pre := listKey{field: fieldPaired}.prefix()
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: pre, UpperBound: prefixEnd(pre)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []uint64
	var ch idChunk
	for _, o := range orig {
		c := o + 1
		if c >= s.meta.nextID {
			break
		}
		if !ch.ok || c < ch.first || c > ch.last {
			// The list key with the greatest first ID at or below c.
			if !it.SeekLT(listKey{field: fieldPaired, first: c + 1}.encode()) {
				continue
			}
			k, err := decodeListKey(it.Key(), 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.dir, err)
			}
			if !ch.ok || k.first != ch.first {
				if err := ch.load(it.Value(), k.first); err != nil {
					return nil, fmt.Errorf("%s: %w", s.dir, err)
				}
			}
		}
		if ch.has(c) {
			out = append(out, c)
		}
	}
	return out, it.Error()
}

// idChunk answers membership in one ID list value for ascending IDs: a
// bitmap is tested in place (decoding a 64 k-ID chunk for each of a few
// candidates was most of a selective lookup's added time), other codes
// are decoded once and merged.
type idChunk struct {
	ok          bool
	first, last uint64
	bitmap      []byte // for a bitmap: its bits, from first
	ids         []uint64
	pos         int // the merge's place in ids
}

func (ch *idChunk) load(v []byte, first uint64) error {
	ch.ok, ch.first, ch.last, ch.pos = false, first, first, 0
	ch.bitmap, ch.ids = ch.bitmap[:0], ch.ids[:0]
	if n, k := binary.Uvarint(v); k > 0 && len(v) > k && v[k] == listBitmap {
		span, ks := binary.Uvarint(v[k+1:])
		if bm := v[k+1+max(ks, 0):]; ks > 0 && span > 0 && (span+7)/8 == uint64(len(bm)) && n > 0 {
			ch.bitmap = append(ch.bitmap, bm...)
			ch.ok, ch.last = true, first+span-1
			return nil
		}
		return fmt.Errorf("%w: ID list", errCorrupt)
	}
	ids, err := decodeIDs(v, first, ch.ids)
	if err != nil {
		return err
	}
	ch.ids, ch.ok = ids, true
	if len(ids) > 0 {
		ch.last = ids[len(ids)-1]
	}
	return nil
}

// has reports whether id is in the chunk; ids asked of a loaded chunk
// must ascend.
func (ch *idChunk) has(id uint64) bool {
	if id < ch.first || id > ch.last {
		return false
	}
	if len(ch.bitmap) > 0 {
		i := id - ch.first
		return ch.bitmap[i/8]&(1<<(i%8)) != 0
	}
	for ch.pos < len(ch.ids) && ch.ids[ch.pos] < id {
		ch.pos++
	}
	return ch.pos < len(ch.ids) && ch.ids[ch.pos] == id
}

// lookupListed is Lookup without the paired responders.
func (s *Store) lookupListed(ctx context.Context, l Lookup) ([]uint64, bool, error) {
	if l.Field == FieldSrcAddr || l.Field == FieldDstAddr {
		ids, _, err := s.lookupAddr(ctx, l, false)
		return ids, true, err
	}
	lo, hi, exact, err := valueRange(&l)
	if err != nil {
		return nil, false, err
	}
	var ids []uint64
	err = s.listIter(ctx, l.Field, lo, hi, func(k listKey, v []byte) error {
		var err error
		ids, err = decodeIDs(v, k.first, ids)
		if err != nil {
			return fmt.Errorf("%s: %w", s.dir, err)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if finalField(l.Field) {
		// Flows live at the commit have no final values yet: candidates.
		live, err := s.liveIDs()
		if err != nil {
			return nil, false, err
		}
		ids = append(ids, live...)
		exact = false
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if l.Field == FieldCommunity {
		// The lists hold the flow that began each connection: add peers.
		for len(ids) > 0 && ids[len(ids)-1] >= s.meta.nextID {
			ids = ids[:len(ids)-1]
		}
		n := len(ids)
		err := s.Flows(ctx, slices.Clone(ids), func(f *flow.Flow) error {
			if f.Peer != 0 {
				ids = append(ids, f.Peer)
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		if len(ids) > n {
			slices.Sort(ids)
			ids = slices.Compact(ids)
		}
	}
	for len(ids) > 0 && ids[len(ids)-1] >= s.meta.nextID {
		ids = ids[:len(ids)-1]
	}
	return ids, exact, nil
}

// Estimate returns how many flows a lookup would return (at most),
// reading only the counts at the head of each ID list: a cheap way for a
// planner to order lookups.
func (s *Store) Estimate(ctx context.Context, l Lookup) (uint64, error) {
	n, err := s.estimateListed(ctx, l)
	if m, ok := mirror(l); ok && err == nil {
		var o uint64
		o, err = s.estimateListed(ctx, m) // the paired responders, at most
		n += o
		if l.Either {
			n *= 2 // either direction's, and the responders of both
		}
	}
	return n, err
}

func (s *Store) estimateListed(ctx context.Context, l Lookup) (uint64, error) {
	if l.Field == FieldSrcAddr || l.Field == FieldDstAddr {
		_, n, err := s.lookupAddr(ctx, l, true)
		return n, err
	}
	lo, hi, _, err := valueRange(&l)
	if err != nil {
		return 0, err
	}
	var n uint64
	err = s.listIter(ctx, l.Field, lo, hi, func(_ listKey, v []byte) error {
		if c, k := binary.Uvarint(v); k > 0 {
			n += c
		}
		return nil
	})
	if finalField(l.Field) {
		live, err := s.liveIDs()
		if err != nil {
			return 0, err
		}
		n += uint64(len(live))
	}
	if l.Field == FieldCommunity {
		n *= 2 // and their peers
	}
	return n, err
}

// lookupAddr reads, in every segment, the address blocks covering
// [AddrLo, AddrHi]. With estimate set it decodes little and returns an
// upper bound of the pairs in range instead.
func (s *Store) lookupAddr(ctx context.Context, l Lookup, estimate bool) ([]uint64, uint64, error) {
	ver := uint8(6)
	lo, hi := l.AddrLo.AsSlice(), l.AddrHi.AsSlice()
	if l.AddrLo.Is4() {
		ver = 4
	}
	if len(lo) != len(hi) {
		return nil, 0, fmt.Errorf("address range %v-%v mixes IPv4 and IPv6", l.AddrLo, l.AddrHi)
	}
	alen := len(lo)
	all := []byte{tagAddr, byte(l.Field), ver}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: all, UpperBound: prefixEnd(all)})
	if err != nil {
		return nil, 0, err
	}
	defer it.Close()
	var ids []uint64
	var n uint64
	for ok := it.First(); ok; {
		k, err := decodeAddrKey(it.Key())
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", s.dir, err)
		}
		seg := k.segment
		if seg >= s.meta.nextID {
			break // written by a run that did not commit
		}
		pre := addrSegmentPrefix(l.Field, ver, seg)
		// The block that holds lo: the last one starting at or before it.
		start := binary.BigEndian.AppendUint64(append(slices.Clone(pre), lo...), 0)
		if ok = it.SeekLT(start); !ok || !bytes.HasPrefix(it.Key(), pre) {
			ok = it.SeekGE(pre)
		}
		for blocks := 0; ok && bytes.HasPrefix(it.Key(), pre); ok = it.Next() {
			first := it.Key()[len(pre) : len(pre)+alen]
			if string(first) > string(hi) {
				break
			}
			blocks++
			if estimate && blocks > 2 {
				n += addrBlock // a wide range: count whole blocks
				continue
			}
			var past bool
			mark := len(ids)
			ids, past, err = decodeAddrBlock(it.Value(), alen, lo, hi, ids)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: %w", s.dir, err)
			}
			if estimate {
				n += uint64(len(ids) - mark)
				ids = ids[:mark]
			}
			if past {
				break
			}
		}
		// On to the next segment.
		ok = it.SeekGE(prefixEnd(pre))
	}
	if err := it.Error(); err != nil {
		return nil, 0, err
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for len(ids) > 0 && ids[len(ids)-1] >= s.meta.nextID {
		ids = ids[:len(ids)-1]
	}
	return ids, n, nil
}
