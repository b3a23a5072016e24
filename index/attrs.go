package index

import (
	"encoding/base64"
	"encoding/binary"
	"math/bits"
	"slices"

	"github.com/pcapflow/pcapflow/flow"
)

// Attribute keys come in two encodings.
//
// ID lists, for fields with few distinct values (ports, protocol, VLAN,
// time and count buckets, Community ID buckets): one key per value (per
// 64Ki IDs), value = uvarint(count) then the IDs delta-encoded.
//
// Sorted pair blocks, for addresses, whose values are as many as the
// hosts: each capture's (address, flow ID) pairs sorted by address then
// ID, cut into blocks of about addrBlock pairs. The key is
//
//	A <field> <IP version> <capture's first flow ID u64> <address> <ID u64>
//
// of the block's first pair (captures have disjoint key ranges, so that a
// block's neighbours are its own capture's); the value is a sequence of
// runs, one per address:
//
//	address (4 or 16 bytes), uvarint(n), uvarint(first ID), n-1 uvarint ID deltas
//
// A range lookup seeks to the block holding the low address and reads
// blocks until an address passes the high one. Keys grow with flows/512,
// not with distinct hosts.

// maxListIDs splits long ID lists over several keys.
const maxListIDs = 1 << 16

// addrBlock is the number of (address, ID) pairs per block.
const addrBlock = 512

// idBuf accumulates one value's ID list.
type idBuf struct {
	field       Field
	value       []byte // the attribute value, for the key
	first, last uint64
	n           int
	buf         []byte
}

// attrBuilder collects the attribute keys of one capture's flows, which
// arrive in ID order.
type attrBuilder struct {
	b         *writer
	firstID   uint64
	ports     [2][]*idBuf // by port, source and destination
	proto     [256]*idBuf
	vlan      map[uint16]*idBuf
	times     [2]map[int64]*idBuf // first, last: by minute
	counts    [2][65]*idBuf       // packets, bytes: by bit length
	community []*idBuf            // by 16-bit hash bucket
	tunnel    [256]*idBuf         // by tunnel type
	tunnelID  map[uint32]*idBuf
	peerCID   map[uint64]uint16 // bucket of flows whose peer is still to come
	v4        [2][]uint64       // address<<32 | (ID - firstID)
	v6        [2][]v6pair
}

type v6pair struct {
	hi, lo uint64
	id     uint32
}

// newAttrBuilder starts the attribute lists of flows from firstID on;
// flows is how many there will be (IPv4 address pairs are preallocated
// for them: growing two arrays of millions by doubling showed up in the
// ingest profile of a 5-million-flow capture).
func newAttrBuilder(b *writer, firstID uint64, flows int) *attrBuilder {
	a := &attrBuilder{b: b, firstID: firstID, vlan: map[uint16]*idBuf{},
		times: [2]map[int64]*idBuf{{}, {}}, peerCID: map[uint64]uint16{}, tunnelID: map[uint32]*idBuf{},
		community: make([]*idBuf, 1<<16)}
	a.v4[0], a.v4[1] = make([]uint64, 0, flows), make([]uint64, 0, flows)
	return a
}

// list returns the list *p, creating it for field f and the value made
// by value (called once per distinct value).
func list(p **idBuf, f Field, value func() []byte) *idBuf {
	if *p == nil {
		*p = &idBuf{field: f, value: value()}
	}
	return *p
}

var (
	portFields  = [2]Field{FieldSrcPort, FieldDstPort}
	timeFields  = [2]Field{FieldFirst, FieldLast}
	countFields = [2]Field{FieldPackets, FieldBytes}
)

func (a *attrBuilder) add(f *flow.Flow) error {
	k := &f.Key
	id := f.ID
	rel := uint32(id - a.firstID)
	if k.IPVersion == 4 {
		a.v4[0] = append(a.v4[0], uint64(binary.BigEndian.Uint32(k.Src[:4]))<<32|uint64(rel))
		a.v4[1] = append(a.v4[1], uint64(binary.BigEndian.Uint32(k.Dst[:4]))<<32|uint64(rel))
	} else {
		a.v6[0] = append(a.v6[0], v6pair{binary.BigEndian.Uint64(k.Src[:8]), binary.BigEndian.Uint64(k.Src[8:]), rel})
		a.v6[1] = append(a.v6[1], v6pair{binary.BigEndian.Uint64(k.Dst[:8]), binary.BigEndian.Uint64(k.Dst[8:]), rel})
	}
	var err error
	add := func(l *idBuf) {
		if err == nil {
			err = a.addTo(l, id)
		}
	}
	if portProto(k.Proto) {
		for d, port := range [2]uint16{k.SrcPort, k.DstPort} {
			if a.ports[d] == nil {
				a.ports[d] = make([]*idBuf, 1<<16)
			}
			add(list(&a.ports[d][port], portFields[d], func() []byte { return u16Value(port) }))
		}
	}
	add(list(&a.proto[k.Proto], FieldProto, func() []byte { return []byte{k.Proto} }))
	for i, v := range k.VLANs() {
		if !slices.Contains(k.VLANs()[:i], v) {
			l := a.vlan[v]
			add(list(&l, FieldVLAN, func() []byte { return u16Value(v) }))
			a.vlan[v] = l
		}
	}
	for i, ts := range [2]int64{f.First, f.Last} {
		m := minute(ts)
		l := a.times[i][m]
		if l == nil {
			l = &idBuf{field: timeFields[i], value: timeValue(ts)}
			a.times[i][m] = l
		}
		add(l)
	}
	for i, c := range [2]uint64{f.Packets, f.Bytes} {
		b := bits.Len64(c)
		add(list(&a.counts[i][b], countFields[i], func() []byte { return []byte{byte(b)} }))
	}
	if tt := k.TunnelType; tt != 0 {
		add(list(&a.tunnel[tt], FieldTunnel, func() []byte { return []byte{byte(tt)} }))
		l := a.tunnelID[k.TunnelID]
		add(list(&l, FieldTunnelID, func() []byte { return binary.BigEndian.AppendUint32(nil, k.TunnelID) }))
		a.tunnelID[k.TunnelID] = l
	}
	// Both directions of a connection share a Community ID: hash it once.
	cb, ok := a.peerCID[id]
	if ok {
		delete(a.peerCID, id)
	} else {
		h := flow.CommunityHash(k, 0)
		cb = binary.BigEndian.Uint16(h[:2])
		if f.Peer > id {
			a.peerCID[f.Peer] = cb
		}
	}
	add(list(&a.community[cb], FieldCommunity, func() []byte { return u16Value(cb) }))
	return err
}

func minute(ns int64) int64 {
	m := ns / timeBucket
	if ns < 0 && ns%timeBucket != 0 {
		m--
	}
	return m
}

func (a *attrBuilder) addTo(l *idBuf, id uint64) error {
	if l.n == 0 {
		l.first, l.last = id, id
	}
	l.buf = binary.AppendUvarint(l.buf, id-l.last)
	l.last = id
	l.n++
	if l.n == maxListIDs {
		return a.emit(l)
	}
	return nil
}

func (a *attrBuilder) emit(l *idBuf) error {
	if l == nil || l.n == 0 {
		return nil
	}
	val := binary.AppendUvarint(make([]byte, 0, len(l.buf)+4), uint64(l.n))
	val = append(val, l.buf...)
	err := a.b.set(attrKey(l.field, l.value, l.first), val)
	l.n, l.buf = 0, l.buf[:0]
	return err
}

// communityBucket is the bucket of a flow's Community ID.
func communityBucket(k *flow.Key) []byte {
	h := flow.CommunityHash(k, 0)
	return h[:2]
}

// communityValue is the bucket of a Community ID: the first two bytes of
// its hash.
func communityValue(cid string) []byte {
	if len(cid) < 6 {
		return []byte{0, 0}
	}
	raw, err := base64.StdEncoding.DecodeString(cid[2:])
	if err != nil || len(raw) < 2 {
		return []byte{0, 0}
	}
	return raw[:2]
}

func (a *attrBuilder) finish() error {
	var lists []*idBuf
	for _, ports := range a.ports {
		lists = append(lists, ports...)
	}
	lists = append(lists, a.proto[:]...)
	for _, l := range a.vlan {
		lists = append(lists, l)
	}
	for _, m := range a.times {
		for _, l := range m {
			lists = append(lists, l)
		}
	}
	lists = append(lists, a.counts[0][:]...)
	lists = append(lists, a.counts[1][:]...)
	lists = append(lists, a.community...)
	lists = append(lists, a.tunnel[:]...)
	for _, l := range a.tunnelID {
		lists = append(lists, l)
	}
	for _, l := range lists {
		if err := a.emit(l); err != nil {
			return err
		}
	}
	for d := 0; d < 2; d++ {
		f := []Field{FieldSrcAddr, FieldDstAddr}[d]
		slices.Sort(a.v4[d])
		w := addrBlockWriter{a: a, f: f, alen: 4}
		for _, x := range a.v4[d] {
			var addr [16]byte
			binary.BigEndian.PutUint32(addr[:], uint32(x>>32))
			if err := w.add(addr, a.firstID+uint64(uint32(x))); err != nil {
				return err
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
		slices.SortFunc(a.v6[d], func(x, y v6pair) int {
			switch {
			case x.hi != y.hi:
				return cmpU64(x.hi, y.hi)
			case x.lo != y.lo:
				return cmpU64(x.lo, y.lo)
			}
			return cmpU64(uint64(x.id), uint64(y.id))
		})
		w = addrBlockWriter{a: a, f: f, alen: 16}
		for _, x := range a.v6[d] {
			var addr [16]byte
			binary.BigEndian.PutUint64(addr[:], x.hi)
			binary.BigEndian.PutUint64(addr[8:], x.lo)
			if err := w.add(addr, a.firstID+uint64(x.id)); err != nil {
				return err
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// addrBlockWriter cuts sorted (address, ID) pairs into blocks.
type addrBlockWriter struct {
	a      *attrBuilder
	f      Field
	alen   int
	n      int      // pairs in the block
	key    []byte   // the block's first pair, as a key
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
		w.key = addrBlockKey(w.f, w.alen, w.a.firstID, addr[:w.alen], id)
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
	err := w.a.b.set(w.key, w.buf)
	w.n, w.buf = 0, w.buf[:0]
	return err
}

// isAddrField reports whether a field is stored as sorted pair blocks.
func isAddrField(f Field) bool { return f == FieldSrcAddr || f == FieldDstAddr }

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

// addrBlockKey is the key of an address block.
func addrBlockKey(f Field, alen int, capFirst uint64, addr []byte, id uint64) []byte {
	k := addrCapturePrefix(f, alen, capFirst)
	k = append(k, addr...)
	return binary.BigEndian.AppendUint64(k, id)
}

// addrCapturePrefix is the key prefix of one capture's address blocks.
func addrCapturePrefix(f Field, alen int, capFirst uint64) []byte {
	ver := byte(4)
	if alen == 16 {
		ver = 6
	}
	return binary.BigEndian.AppendUint64([]byte{tagAttr, byte(f), ver}, capFirst)
}
