package index

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/pcapflow/pcapflow/flow"
)

// Attribute keys come in three encodings.
//
// ID lists (A keys), for values fixed when a flow starts and with few
// distinct values (ports, protocol, VLAN, tunnel type and ID, Community
// ID buckets): one key per value per list chunk, the value
//
//	uvarint(count) code ...
//
// with code listDeltas (uvarint ID deltas from the key's first ID),
// listBitmap (uvarint span, a bit per ID), listRice (the parameter, Rice
// codes of the deltas less one) or listGaps (uvarint span, then the IDs
// of the span the list lacks, as a list of one of the other codes):
// appendIDs keeps the shortest. A responder that mirrors the flow before
// it is in none of the address, port and MAC lists, but in the paired
// list (fieldPaired, a value of width 0).
//
// Final-value lists (B keys), for values known when a flow ends (first
// and last time, packet and byte counts, all bucketed): the same lists,
// per index run (generation), of the flows that ended in it. The flows
// live at the last commit are in the metadata list "live" instead, and
// every lookup of these fields takes them as candidates.
//
// Sorted pair blocks (H keys), for addresses, whose values are as many
// as the hosts: the (address, flow ID) pairs of a segment of flows (up
// to segmentFlows consecutive IDs) sorted by address then ID, cut into
// blocks of about addrBlock pairs, each keyed by its first pair and
// holding runs, one per address:
//
//	address (4 or 16 bytes), uvarint(n), uvarint(first ID), n-1 uvarint ID deltas
//
// A range lookup seeks, in each segment, to the block holding the low
// address and reads blocks until an address passes the high one. Keys
// grow with flows/512, not with distinct hosts.

// maxListIDs splits long ID lists over several keys.
const maxListIDs = 1 << 16

// addrBlock is the number of (address, ID) pairs per block.
const addrBlock = 512

// segmentFlows bounds the flows of one segment of address blocks: the
// pairs are held in memory until the segment is written.
const segmentFlows = 1 << 18

// idList accumulates one value's ID list of flows as they start: IDs
// come in ascending order and are delta-encoded as they come.
type idList struct {
	key  listKey
	n    int
	last uint64
	buf  []byte
}

func (l *idList) add(w *writer, id uint64) error {
	if l.n == 0 {
		l.key.first, l.last = id, id
	}
	l.buf = binary.AppendUvarint(l.buf, id-l.last)
	l.last = id
	l.n++
	if l.n == maxListIDs {
		return l.emit(w)
	}
	return nil
}

func (l *idList) emit(w *writer) error {
	if l == nil || l.n == 0 {
		return nil
	}
	ids := w.ids[:0]
	prev := l.key.first
	for b := l.buf; len(b) > 0; {
		d, k := binary.Uvarint(b)
		prev += d
		ids = append(ids, prev)
		b = b[k:]
	}
	w.ids = ids
	err := w.setIDs(l.key.encode(), l.key.first, ids)
	l.n, l.buf = 0, l.buf[:0]
	return err
}

// list returns the list *p, making it for field f and value (which it
// keeps) the first time.
func list(p **idList, f Field, value []byte) *idList {
	if *p == nil {
		*p = &idList{key: listKey{field: f, value: value}}
	}
	return *p
}

// finalList accumulates one value's IDs of flows as they end: in no
// particular order, sorted when written.
type finalList struct {
	key listKey
	ids []uint64
}

func (l *finalList) emit(w *writer, bitmap *[]uint64) error {
	if len(l.ids) == 0 {
		return nil
	}
	ids := sortIDs(l.ids, bitmap)
	l.ids = l.ids[:0]
	// Cut like the other lists, so that dense ones may be gap-coded.
	for len(ids) > 0 {
		n := min(len(ids), maxListIDs)
		k := l.key
		k.first = ids[0]
		if err := w.setIDs(k.encode(), ids[0], ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// sortIDs sorts ids in place and drops repeats. Flows end nearly in the
// order they began, so the IDs of a final list mostly span not much
// more than their number: those are sorted by setting their bits in a
// bitmap of the span (bitmap is its reused space) and reading them back,
// in O(n + span/64); pdqsort of them was 0.19 s of the sink's 1.9 on the
// 2 GB real capture. Others are sorted by comparison.
func sortIDs(ids []uint64, bitmap *[]uint64) []uint64 {
	lo, hi := ids[0], ids[0]
	for _, id := range ids {
		lo, hi = min(lo, id), max(hi, id)
	}
	words := (hi-lo)/64 + 1
	if words > uint64(len(ids)) {
		slices.Sort(ids)
		return slices.Compact(ids)
	}
	if uint64(cap(*bitmap)) < words {
		*bitmap = make([]uint64, words)
	}
	bm := (*bitmap)[:words]
	for _, id := range ids {
		bm[(id-lo)/64] |= 1 << ((id - lo) % 64)
	}
	out := ids[:0]
	for i, x := range bm {
		for x != 0 {
			out = append(out, lo+uint64(i)*64+uint64(bits.TrailingZeros64(x)))
			x &= x - 1
		}
	}
	clear(bm)
	return out
}

// startAttrs collects the attribute keys of flows as they start: A lists
// and the address pairs of the current segment.
type startAttrs struct {
	w       *writer
	segment uint64      // first ID of the current segment
	n       int         // flows in it
	v4      [2][]uint64 // address<<32 | (ID - segment)
	v6      [2][]v6pair
	v6tmp   []v6pair        // sortV6's space
	v6count *[1<<16 + 1]int // and its counts
	// Values with many distinct values each flow has one of are gathered
	// as (value, ID) pairs and sorted into lists when written: appending
	// to one of 65536 lists per flow cost a cache miss or two each.
	ports     [2]pairList // source and destination ports
	community pairList    // by bucket (communityBits)
	scratch   []uint64    // the pair lists' sort space: they flush one at a time
	proto     [256]*idList
	tunnel    [256]*idList
	vlan      map[uint16]*idList
	mac       [2]map[[6]byte]*idList
	// macLast is the list macList returned last for each direction: most
	// flows of a capture share a gateway's MAC, so a map lookup per flow
	// and direction (60 ms on the 2 GB real capture) mostly repeats.
	macLast  [2]*idList
	tunnelID map[uint32]*idList
	paired   *idList
	prev     prevFlow
	// The IDs the lists in the maps (VLANs, MACs, tunnel IDs) held when
	// last counted, and those added since: see trimMapped.
	heldBase, held int
	mappedAt       int // mappedFlush (tests lower it)
}

// mappedFlush bounds the IDs the lists of the maps hold before they are
// all written. Each list writes itself at maxListIDs, so the lists of a
// few values (a gateway's MAC) stay small; but a run over an archive
// whose flows spread over many MACs (a large LAN) held every one of
// their IDs to its end.
const mappedFlush = 1 << 20

type v6pair struct {
	hi, lo uint64
	id     uint32
}

func newStartAttrs(w *writer, firstID uint64) *startAttrs {
	a := &startAttrs{w: w, segment: firstID,
		ports:     [2]pairList{{field: FieldSrcPort, base: firstID}, {field: FieldDstPort, base: firstID}},
		community: pairList{field: FieldCommunity, base: firstID},
		vlan:      map[uint16]*idList{}, mac: [2]map[[6]byte]*idList{{}, {}}, tunnelID: map[uint32]*idList{},
		mappedAt: mappedFlush}
	a.ports[0].tmp, a.ports[1].tmp, a.community.tmp = &a.scratch, &a.scratch, &a.scratch
	return a
}

// pairList gathers the (value, ID) pairs of a 16-bit field of flows as
// they start (in ID order), as value<<pairIDBits | (ID - base), in
// chunks of pairChunk: one slice grown to a million pairs was copied at
// every doubling into fresh memory, 0.12 s of the 2 GB real capture's
// run.
type pairList struct {
	field  Field
	base   uint64
	chunks [][]uint64 // full but for the last; kept for the next pairs after a flush
	n      int        // pairs gathered
	tmp    *[]uint64  // the sort's scratch space, shared by the lists of a run
	ids    []uint64
}

const (
	pairIDBits = 44
	// pairFlush bounds the pairs gathered before they are written.
	pairFlush     = 1 << 20
	pairChunkBits = 16
	pairChunk     = 1 << pairChunkBits
	pairChunkMask = pairChunk - 1
)

func (l *pairList) add(w *writer, v uint16, id uint64) error {
	c := l.n >> pairChunkBits
	if c == len(l.chunks) {
		l.chunks = append(l.chunks, make([]uint64, pairChunk))
	}
	l.chunks[c][l.n&pairChunkMask] = uint64(v)<<pairIDBits | (id - l.base)
	l.n++
	if l.n >= pairFlush || id-l.base >= 1<<pairIDBits-1 {
		return l.flush(w, id+1)
	}
	return nil
}

// at is pair i.
func (l *pairList) at(i int) *uint64 { return &l.chunks[i>>pairChunkBits][i&pairChunkMask] }

// flush writes a list per value and starts again at ID next.
func (l *pairList) flush(w *writer, next uint64) error {
	defer func() { l.n, l.base = 0, next }()
	n := l.n
	if n == 0 {
		return nil
	}
	// The pairs are in ID order: a stable radix sort on the value gives
	// (value, ID) order; the low byte's pass goes from the chunks into
	// the scratch space, the high byte's back.
	if cap(*l.tmp) < n {
		*l.tmp = make([]uint64, n)
	}
	tmp := (*l.tmp)[:n]
	var count [257]int
	for c := 0; c*pairChunk < n; c++ {
		for _, p := range l.chunks[c][:min(pairChunk, n-c*pairChunk)] {
			count[(p>>pairIDBits)&0xff+1]++
		}
	}
	for i := 1; i < len(count); i++ {
		count[i] += count[i-1]
	}
	for c := 0; c*pairChunk < n; c++ {
		for _, p := range l.chunks[c][:min(pairChunk, n-c*pairChunk)] {
			d := (p >> pairIDBits) & 0xff
			tmp[count[d]] = p
			count[d]++
		}
	}
	count = [257]int{}
	for _, p := range tmp {
		count[(p>>(pairIDBits+8))&0xff+1]++
	}
	for i := 1; i < len(count); i++ {
		count[i] += count[i-1]
	}
	for _, p := range tmp {
		d := (p >> (pairIDBits + 8)) & 0xff
		*l.at(count[d]) = p
		count[d]++
	}
	for i := 0; i < n; {
		v := *l.at(i) >> pairIDBits
		ids := l.ids[:0]
		for ; i < n && *l.at(i)>>pairIDBits == v; i++ {
			ids = append(ids, l.base+*l.at(i)&(1<<pairIDBits-1))
		}
		l.ids = ids
		for len(ids) > 0 {
			k := min(len(ids), maxListIDs)
			key := listKey{field: l.field, value: u16Value(uint16(v)), first: ids[0]}
			if err := w.setIDs(key.encode(), ids[0], ids[:k]); err != nil {
				return err
			}
			ids = ids[k:]
		}
	}
	return nil
}

var macFields = [2]Field{FieldSrcMAC, FieldDstMAC}

var portFields = [2]Field{FieldSrcPort, FieldDstPort}

// add records the attributes of flow f, which just started (its key,
// MACs and tunnel are final).
func (a *startAttrs) add(f *flow.Flow) error {
	if a.n == segmentFlows {
		if err := a.flushSegment(); err != nil {
			return err
		}
		a.segment = f.ID
	}
	a.n++
	w := a.w
	// A responder that started right after its originator, with the
	// originator's MACs swapped, has all of its addresses, ports and MACs
	// swapped: it is not listed under them (they are half of those lists)
	// but in the paired list, and a lookup of one of those fields finds
	// it as the flow after one with the mirrored value (Store.Lookup).
	var err error
	if a.mirrors(f) {
		err = list(&a.paired, fieldPaired, nil).add(w, f.ID)
	} else {
		err = a.addOwn(w, f)
	}
	a.prev = prevFlow{f.ID, [2][6]byte{f.SrcMAC, f.DstMAC}, [2]bool{f.HasSrcMAC, f.HasDstMAC}}
	if err != nil {
		return err
	}
	if err := a.addRest(w, f); err != nil {
		return err
	}
	if a.heldBase+a.held >= a.mappedAt {
		return a.trimMapped()
	}
	return nil
}

// trimMapped counts what the lists of the maps hold and, when that is
// half their bound (mappedFlush) or more, writes them and drops them,
// their space with them; a value that goes on gets a new list. Counted
// only every half bound of adds or more, the lists' lengths are summed
// for at most two adds each.
func (a *startAttrs) trimMapped() error {
	lists := a.mapped()
	held := 0
	for _, l := range lists {
		held += l.n
	}
	a.held = 0
	if held < a.mappedAt/2 {
		a.heldBase = held
		return nil
	}
	for _, l := range lists {
		if err := l.emit(a.w); err != nil {
			return err
		}
	}
	clear(a.vlan)
	clear(a.mac[0])
	clear(a.mac[1])
	clear(a.tunnelID)
	a.macLast = [2]*idList{}
	a.heldBase = 0
	return nil
}

// mapped lists the lists of the maps.
func (a *startAttrs) mapped() []*idList {
	var lists []*idList
	for _, l := range a.vlan {
		lists = append(lists, l)
	}
	for _, m := range a.mac {
		for _, l := range m {
			lists = append(lists, l)
		}
	}
	for _, l := range a.tunnelID {
		lists = append(lists, l)
	}
	return lists
}

// prevFlow is what startAttrs.mirrors needs of the flow added last.
type prevFlow struct {
	id  uint64
	mac [2][6]byte // source, destination
	has [2]bool
}

// mirrors reports whether f is a responder whose originator is the flow
// added just before it (ID - 1) and whose MACs are that flow's swapped.
// Its key is the originator's reversed: the table sets Peer when a flow
// starts only for its reverse key's live flow (VLAN tags aside).
func (a *startAttrs) mirrors(f *flow.Flow) bool {
	p := &a.prev
	return f.Peer != 0 && f.Peer+1 == f.ID && p.id == f.Peer &&
		f.HasSrcMAC == p.has[1] && f.HasDstMAC == p.has[0] &&
		(!f.HasSrcMAC || f.SrcMAC == p.mac[1]) && (!f.HasDstMAC || f.DstMAC == p.mac[0])
}

// addOwn lists a flow that is not a mirror under its addresses, ports
// and MACs.
func (a *startAttrs) addOwn(w *writer, f *flow.Flow) error {
	k := &f.Key
	rel := uint32(f.ID - a.segment)
	if k.IPVersion == 4 {
		a.v4[0] = append(a.v4[0], uint64(binary.BigEndian.Uint32(k.Src[:4]))<<32|uint64(rel))
		a.v4[1] = append(a.v4[1], uint64(binary.BigEndian.Uint32(k.Dst[:4]))<<32|uint64(rel))
	} else {
		a.v6[0] = append(a.v6[0], v6pair{binary.BigEndian.Uint64(k.Src[:8]), binary.BigEndian.Uint64(k.Src[8:]), rel})
		a.v6[1] = append(a.v6[1], v6pair{binary.BigEndian.Uint64(k.Dst[:8]), binary.BigEndian.Uint64(k.Dst[8:]), rel})
	}
	if flow.PortProto(k.Proto) {
		if err := a.ports[0].add(w, k.SrcPort, f.ID); err != nil {
			return err
		}
		if err := a.ports[1].add(w, k.DstPort, f.ID); err != nil {
			return err
		}
	}
	if f.HasSrcMAC {
		if err := a.macList(0, &f.SrcMAC).add(w, f.ID); err != nil {
			return err
		}
		a.held++
	}
	if f.HasDstMAC {
		if err := a.macList(1, &f.DstMAC).add(w, f.ID); err != nil {
			return err
		}
		a.held++
	}
	return nil
}

// addRest lists every flow under its protocol, VLANs and tunnel, and a
// connection's first flow under its Community ID.
func (a *startAttrs) addRest(w *writer, f *flow.Flow) error {
	k := &f.Key
	// Every flow is in its protocol's list: the TCP list of most
	// captures then holds nearly every ID and is stored as what it lacks
	// (listGaps).
	if err := list(&a.proto[k.Proto], FieldProto, protoValue(k.Proto)).add(w, f.ID); err != nil {
		return err
	}
	for i, v := range k.VLANs() {
		if !slices.Contains(k.VLANs()[:i], v) {
			l := a.vlan[v]
			if err := list(&l, FieldVLAN, u16Value(v)).add(w, f.ID); err != nil {
				return err
			}
			a.vlan[v] = l
			a.held++
		}
	}
	if tt := k.TunnelType; tt != 0 {
		if err := list(&a.tunnel[tt], FieldTunnel, []byte{byte(tt)}).add(w, f.ID); err != nil {
			return err
		}
		l := a.tunnelID[k.TunnelID]
		if err := list(&l, FieldTunnelID, binary.BigEndian.AppendUint32(nil, k.TunnelID)).add(w, f.ID); err != nil {
			return err
		}
		a.tunnelID[k.TunnelID] = l
		a.held++
	}
	// A connection's flows share a Community ID: the list holds the
	// flow that starts it (whose peer, if it comes, comes later), and a
	// lookup adds the peers (Store.Lookup). ICMP messages without a
	// reply type have one of their own each way.
	if f.Peer == 0 || k.Proto == 1 || k.Proto == 58 {
		return a.community.add(w, communityBucket(&f.Key), f.ID)
	}
	return nil
}

// macList returns the list of a source (d 0) or destination MAC.
func (a *startAttrs) macList(d int, m *[6]byte) *idList {
	if l := a.macLast[d]; l != nil && string(l.key.value) == string(m[:]) {
		return l
	}
	l := a.mac[d][*m]
	if l == nil {
		l = &idList{key: listKey{field: macFields[d], value: slices.Clone(m[:])}}
		a.mac[d][*m] = l
	}
	a.macLast[d] = l
	return l
}

var protoValues = func() (v [256][]byte) {
	for i := range v {
		v[i] = []byte{byte(i)}
	}
	return v
}()

func protoValue(p uint8) []byte { return protoValues[p] }

// communityBits is the width of a Community ID bucket: a lookup reads
// the records of about connections/4096 candidates (and their peers).
// 10 bits would save 0.23 MB of the 2 GB real capture's index and make
// a lookup read 730 records instead of 180: 47 against 20 ms as a
// process (bench/alt).
const communityBits = 12

// communityBucket is the first communityBits bits of the Community ID of
// the connection of a flow with key k.
func communityBucket(k *flow.Key) uint16 {
	h := flow.CommunityHash(k, 0)
	return binary.BigEndian.Uint16(h[:2]) >> (16 - communityBits)
}

// communityValue is the bucket of a Community ID, as a list value.
func communityValue(cid string) []byte {
	var h [20]byte
	if len(cid) >= 6 {
		if raw, err := base64.StdEncoding.DecodeString(cid[2:]); err == nil && len(raw) >= 2 {
			copy(h[:], raw)
		}
	}
	return u16Value(binary.BigEndian.Uint16(h[:2]) >> (16 - communityBits))
}

// flush writes the lists and the current segment's address blocks; the
// next flow starts a new segment.
func (a *startAttrs) flush(nextID uint64) error {
	for _, l := range []*pairList{&a.ports[0], &a.ports[1], &a.community} {
		if err := l.flush(a.w, nextID); err != nil {
			return err
		}
		l.chunks, l.ids = nil, nil // the run's last: give back the memory
	}
	a.scratch = nil
	var lists []*idList
	lists = append(lists, a.proto[:]...)
	lists = append(lists, a.tunnel[:]...)
	lists = append(lists, a.mapped()...)
	lists = append(lists, a.paired)
	for _, l := range lists {
		if err := l.emit(a.w); err != nil {
			return err
		}
	}
	if err := a.flushSegment(); err != nil {
		return err
	}
	a.segment = nextID
	return nil
}

func (a *startAttrs) flushSegment() error {
	defer func() {
		a.n = 0
		for d := range a.v4 {
			a.v4[d], a.v6[d] = a.v4[d][:0], a.v6[d][:0]
		}
	}()
	if a.n == 0 {
		return nil
	}
	for d := 0; d < 2; d++ {
		f := []Field{FieldSrcAddr, FieldDstAddr}[d]
		slices.Sort(a.v4[d])
		w := addrBlockWriter{w: a.w, key: addrKey{field: f, ver: 4, segment: a.segment}, alen: 4}
		for _, x := range a.v4[d] {
			var addr [16]byte
			binary.BigEndian.PutUint32(addr[:], uint32(x>>32))
			if err := w.add(addr, a.segment+uint64(uint32(x))); err != nil {
				return err
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
		v6 := a.sortV6(a.v6[d])
		w = addrBlockWriter{w: a.w, key: addrKey{field: f, ver: 6, segment: a.segment}, alen: 16}
		for _, x := range v6 {
			var addr [16]byte
			binary.BigEndian.PutUint64(addr[:], x.hi)
			binary.BigEndian.PutUint64(addr[8:], x.lo)
			if err := w.add(addr, a.segment+uint64(x.id)); err != nil {
				return err
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
	}
	return nil
}

// sortV6 returns the pairs, which are in ID order, in (address, ID)
// order: a stable radix sort on the address, 16 bits a pass, skipping
// the passes whose digit every pair shares (a segment's addresses are
// mostly in a few /64s). It sorts in ps and a.v6tmp; the result is one
// of the two. A comparison sort took 0.1 s of the 2 GB real capture's
// run, half of whose flows are IPv6.
func (a *startAttrs) sortV6(ps []v6pair) []v6pair {
	if cap(a.v6tmp) < len(ps) {
		a.v6tmp = make([]v6pair, len(ps))
	}
	if a.v6count == nil {
		a.v6count = new([1<<16 + 1]int)
	}
	src, dst := ps, a.v6tmp[:len(ps)]
	count := a.v6count
	for pass := 0; pass < 8; pass++ {
		shift := uint(pass%4) * 16
		digit := func(p *v6pair) uint64 {
			if pass < 4 {
				return p.lo >> shift & 0xffff
			}
			return p.hi >> shift & 0xffff
		}
		*count = [1<<16 + 1]int{}
		for i := range src {
			count[digit(&src[i])+1]++
		}
		if len(src) == 0 || count[digit(&src[0])+1] == len(src) {
			continue // every pair has this digit
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for i := range src {
			d := digit(&src[i])
			dst[count[d]] = src[i]
			count[d]++
		}
		src, dst = dst, src
	}
	return src
}

// endAttrs collects the final-value lists of flows as they end.
type endAttrs struct {
	w      *writer
	gen    uint32
	times  [2]map[int64]*finalList // first, last: by minute
	counts [2][65]*finalList       // packets, bytes: by bit length
	n      int                     // IDs held
	// The minute each times map was asked for last, and its list: flows
	// ending one after the other mostly share it.
	lastMin  [2]int64
	lastList [2]*finalList
	// spare is the space of the largest minute's list at the last flush,
	// for the next new minute: a list grown from nothing after each
	// flush, a large zeroed allocation at each doubling, was 0.07 s of
	// the sink on the 2 GB real capture.
	spare   [2][]uint64
	bitmap  []uint64 // sortIDs's space
	flushAt int      // n at which the lists are written: endFlush
}

// endFlush bounds the IDs held before the lists are written.
const endFlush = 1 << 20

func newEndAttrs(w *writer, gen uint32) *endAttrs {
	return &endAttrs{w: w, gen: gen, times: [2]map[int64]*finalList{{}, {}}, flushAt: endFlush}
}

var (
	timeFields  = [2]Field{FieldFirst, FieldLast}
	countFields = [2]Field{FieldPackets, FieldBytes}
)

func (a *endAttrs) add(f *flow.Flow) error {
	for i, ts := range [2]int64{f.First, f.Last} {
		m := minute(ts)
		l := a.lastList[i]
		if l == nil || a.lastMin[i] != m {
			if l = a.times[i][m]; l == nil {
				l = &finalList{key: listKey{final: true, field: timeFields[i], value: timeValue(ts), gen: a.gen}, ids: a.spare[i]}
				a.spare[i] = nil
				a.times[i][m] = l
			}
			a.lastMin[i], a.lastList[i] = m, l
		}
		l.ids = append(l.ids, f.ID)
	}
	for i, c := range [2]uint64{f.Packets, f.Bytes} {
		b := bits.Len64(c)
		l := a.counts[i][b]
		if l == nil {
			l = &finalList{key: listKey{final: true, field: countFields[i], value: []byte{byte(b)}, gen: a.gen}}
			a.counts[i][b] = l
		}
		l.ids = append(l.ids, f.ID)
	}
	if a.n += 4; a.n >= a.flushAt {
		return a.flush()
	}
	return nil
}

func (a *endAttrs) flush() error {
	a.n = 0
	for i := range a.times {
		for _, l := range a.times[i] {
			if err := l.emit(a.w, &a.bitmap); err != nil {
				return err
			}
			if cap(l.ids) > cap(a.spare[i]) {
				a.spare[i] = l.ids[:0]
			}
		}
		// The minutes' lists go, their space with them: kept for reuse,
		// every minute an archive spans held its list's largest size
		// (36 MB at the peak of four copies of the 2 GB real capture two
		// hours apart, 11 MB for one; a week in one run would hold ten
		// thousand minutes). A minute that goes on gets a new list.
		clear(a.times[i])
		a.lastList[i] = nil
		for _, l := range a.counts[i] {
			if l != nil {
				if err := l.emit(a.w, &a.bitmap); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// addrBlockWriter cuts sorted (address, ID) pairs into blocks.
type addrBlockWriter struct {
	w      *writer
	key    addrKey // field, version and segment; the rest per block
	alen   int
	n      int      // pairs in the block
	first  []byte   // the block's key
	buf    []byte   // finished runs
	run    [16]byte // address of the open run
	runIDs []uint64
	inRun  bool
}

func (w *addrBlockWriter) add(addr [16]byte, id uint64) error {
	if w.inRun && addr != w.run {
		w.closeRun()
	}
	if w.n == 0 {
		k := w.key
		k.addr, k.id = addr[:w.alen], id
		w.first = k.encode()
	}
	if !w.inRun {
		w.run, w.inRun = addr, true
	}
	w.runIDs = append(w.runIDs, id)
	w.n++
	if w.n >= addrBlock {
		return w.flush()
	}
	return nil
}

func (w *addrBlockWriter) closeRun() {
	w.buf = append(w.buf, w.run[:w.alen]...)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(w.runIDs)))
	prev := uint64(0)
	for _, id := range w.runIDs {
		w.buf = binary.AppendUvarint(w.buf, id-prev)
		prev = id
	}
	w.runIDs, w.inRun = w.runIDs[:0], false
}

func (w *addrBlockWriter) flush() error {
	if w.inRun {
		w.closeRun()
	}
	if w.n == 0 {
		return nil
	}
	err := w.w.set(w.first, w.buf)
	w.n, w.buf = 0, w.buf[:0]
	return err
}

// decodeAddrBlock appends the IDs of the runs whose address lies in
// [lo, hi] (both alen bytes) and reports whether an address above hi was
// seen (the lookup can stop).
func decodeAddrBlock(b []byte, alen int, lo, hi []byte, out []uint64) ([]uint64, bool, error) {
	for len(b) > 0 {
		if len(b) < alen {
			return out, false, errCorrupt
		}
		addr := b[:alen]
		b = b[alen:]
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return out, false, errCorrupt
		}
		b = b[k:]
		past := string(addr) > string(hi)
		in := !past && string(addr) >= string(lo)
		prev := uint64(0)
		for i := uint64(0); i < n; i++ {
			d, k := binary.Uvarint(b)
			if k <= 0 {
				return out, false, errCorrupt
			}
			b = b[k:]
			prev += d
			if in {
				out = append(out, prev)
			}
		}
		if past {
			return out, true, nil
		}
	}
	return out, false, nil
}

// An ID list (the value of A, B and D keys and of the metadata "live")
// is
//
//	uvarint(count) 0 uvarint(first ID - key's first ID = 0) uvarint(ID delta)*   sparse
//	uvarint(count) 1 uvarint(span) bitmap of span bits, bit i: key's first + i   dense
//	uvarint(count) 2 u8 k, Rice(k) of first ID - key's first, then of each
//	                 ID delta - 1 (bits.go), to the byte                         in between
//
// whichever is shorter: a list holding most IDs of its range (the flows of
// one protocol, of a gateway's MAC, to a server's port) costs a bit per
// ID instead of a byte; a list of IDs a few thousand apart (a client port,
// a Community ID bucket) about log2 of the gap plus 2 bits instead of two
// or three varint bytes.

const (
	listDeltas = 0
	listBitmap = 1
	listRice   = 2
	// listGaps: every ID of a span but a few, given as the list of those
	// missing, itself encoded as a list (never as gaps again): the TCP
	// flows of most captures.
	listGaps = 3
)

func appendIDs(b []byte, first uint64, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	if len(ids) == 0 {
		return append(b, listDeltas)
	}
	span := ids[len(ids)-1] - first + 1
	// A list holding most IDs of its span may be shorter as the list of
	// those it lacks: the shorter of the two is kept. Only lists of at
	// most maxListIDs IDs (every attribute list is cut there), so that a
	// reader can bound what a few bytes stand for.
	if missing := span - uint64(len(ids)); ids[0] >= first && missing < span/4 && len(ids) <= maxListIDs {
		if gaps, ok := gapsOf(first, ids, int(missing)); ok {
			n := len(b)
			b = appendIDCodes(b, first, ids, span)
			alt := binary.AppendUvarint(append(b[n:n:n], listGaps), span)
			alt = appendIDs(alt, first, gaps)
			if len(alt) < len(b)-n {
				b = append(b[:n], alt...)
			}
			return b
		}
	}
	return appendIDCodes(b, first, ids, span)
}

// appendIDCodes appends a non-empty list as a bitmap, Rice codes or
// varint deltas, whichever is shortest.
func appendIDCodes(b []byte, first uint64, ids []uint64, span uint64) []byte {
	// Deltas of dense lists are mostly 1 byte: a bitmap wins below 8
	// IDs in 64.
	if span/8+4 < uint64(len(ids)) && ids[0] >= first {
		b = append(b, listBitmap)
		b = binary.AppendUvarint(b, span)
		n := len(b)
		b = append(b, make([]byte, (span+7)/8)...)
		for _, id := range ids {
			i := id - first
			b[n+int(i/8)] |= 1 << (i % 8)
		}
		return b
	}
	// The sizes of the two delta codes; Rice needs IDs in strictly
	// increasing order.
	k := riceK(span, uint64(len(ids)))
	varint, rice, strict := 0, 0, ids[0] >= first
	prev := first
	for i, id := range ids {
		d := id - prev
		varint += uvarintLen(d)
		if i > 0 {
			strict = strict && id > prev
			d--
		}
		rice += riceLen(d, k)
		prev = id
	}
	if strict && (rice+7)/8+1 < varint {
		b = append(b, listRice, byte(k))
		w := bitWriter{b: b}
		prev := first
		for i, id := range ids {
			d := id - prev
			if i > 0 {
				d--
			}
			w.rice(d, k)
			prev = id
		}
		return w.bytes()
	}
	b = append(b, listDeltas)
	prev = first
	for _, id := range ids {
		b = binary.AppendUvarint(b, id-prev)
		prev = id
	}
	return b
}

// gapsOf returns the IDs from first to the last of ids that ids lacks,
// of which there are missing; ok is false when ids is not strictly
// increasing.
func gapsOf(first uint64, ids []uint64, missing int) (gaps []uint64, ok bool) {
	gaps = make([]uint64, 0, missing)
	next := first
	for _, id := range ids {
		if id < next {
			return nil, false
		}
		for ; next < id; next++ {
			gaps = append(gaps, next)
		}
		next = id + 1
	}
	return gaps, len(gaps) == missing
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// decodeGaps decodes the rest of a listGaps list of n IDs.
func decodeGaps(b []byte, first, n uint64, out []uint64) ([]uint64, error) {
	bad := func() error { return fmt.Errorf("%w: ID list", errCorrupt) }
	// Lists are cut at maxListIDs IDs, so a few bytes never stand for
	// more than that.
	span, k := binary.Uvarint(b)
	if k <= 0 || n > span || n > maxListIDs || span-n > uint64(len(b))*8 || len(b) <= k {
		return out, bad()
	}
	if c, kc := binary.Uvarint(b[k:]); kc <= 0 || c != span-n || len(b) <= k+kc || b[k+kc] == listGaps {
		return out, bad()
	}
	gaps, err := decodeIDs(b[k:], first, nil)
	if err != nil || uint64(len(gaps)) != span-n {
		return out, bad()
	}
	out = slices.Grow(out, int(n))
	next := first
	for _, g := range append(gaps, first+span) {
		if g < next || g > first+span {
			return out, bad()
		}
		for ; next < g; next++ {
			out = append(out, next)
		}
		next = g + 1
	}
	return out, nil
}

func decodeIDs(b []byte, first uint64, out []uint64) ([]uint64, error) {
	bad := func() error { return fmt.Errorf("%w: ID list", errCorrupt) }
	n, k := binary.Uvarint(b)
	if k <= 0 || len(b) <= k {
		return out, bad()
	}
	mode := b[k]
	b = b[k+1:]
	if mode == listGaps {
		return decodeGaps(b, first, n, out)
	}
	if n > uint64(len(b)+k+1)*8 {
		return out, bad()
	}
	out = slices.Grow(out, int(n))
	switch mode {
	case listDeltas:
		if n > uint64(len(b)) {
			return out, bad()
		}
		prev := first
		for i := uint64(0); i < n; i++ {
			d, k := binary.Uvarint(b)
			if k <= 0 {
				return out, bad()
			}
			b = b[k:]
			prev += d
			out = append(out, prev)
		}
	case listRice:
		if len(b) < 1 || b[0] > 40 {
			return out, bad()
		}
		r := bitReader{b: b[1:]}
		k := uint(b[0])
		prev := first
		for i := uint64(0); i < n; i++ {
			d := r.rice(k)
			if i > 0 {
				d++
			}
			prev += d
			out = append(out, prev)
		}
		if r.bad {
			return out, bad()
		}
	case listBitmap:
		span, k := binary.Uvarint(b)
		if k <= 0 || (span+7)/8 != uint64(len(b)-k) {
			return out, bad()
		}
		b = b[k:]
		got := uint64(0)
		for i, x := range b {
			for x != 0 {
				j := bits.TrailingZeros8(x)
				out = append(out, first+uint64(i)*8+uint64(j))
				x &= x - 1
				got++
			}
		}
		if got != n {
			return out, bad()
		}
	default:
		return out, bad()
	}
	return out, nil
}
