package flow

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pcapflow/pcapflow/internal/varint"
	"github.com/pcapflow/pcapflow/pcapio"
)

// The live state of a table, as an index stores it between runs so that
// a capture added later continues the connections still open at the end
// of the archive. With the live flows' records (their keys, counters,
// MACs, peers, state and history, which an index keeps anyway, as
// RestoreTable's caller supplies them) it holds everything that decides
// how later packets are accounted: sequence tracking, the connections'
// endpoint states, which flow each key and each fragment train leads to,
// the tunnel endpoints, the clock and the next ID. Restoring it and
// adding packets gives the same flows as never having stopped.
//
//	"pcapflow-table/4"
//	uvarint nextID; varint clock; uvarint capture
//	uvarint #flows, uvarint(ID - previous ID)*     (the live flows, ascending)
//	uvarint #conns, conn*    (in the order of their first flow's ID)
//	flow*                    (in ID order)
//	uvarint #tagged, (key, uvarint flow position)*
//	uvarint #frags, (fragKey, uvarint flow position, varint ts)*
//	uvarint #tunnels, (tunnelEnds, uvarint n)*
//
// A connection is
//
//	uvarint(position of side 0 - previous connection's), uvarint(position
//	of side 1 - side 0's, 0 for none), u8 endpoint states (3 bits each),
//	u8 bits (sawData, hasBase, seenGiven), [uvarint seen[0], seen[1]]
//	unless the record's history says them, [u32 base[s], big-endian] per
//	hasBase (an initial sequence number: random, so 4 bytes, where a
//	uvarint took 5 that zstd could not bring back to 4)
//
// and a flow
//
//	uvarint flags (stateEnded ...); [uvarint seq base] unless its
//	connection's; uvarint seq next, [uvarint high - next], [varint(finAt -
//	next)]; [uvarint #spans, (lo, hi)*]; [uvarint missing bytes so far];
//	[varint(lastCap - Capture)]; [varint(active - Last)]
//
// where the bracketed parts are there when the flags say so: most live
// flows at the end of a capture are closed connections lingering for
// their stragglers, whose state is a few bytes beyond its ISNs.
const stateVersion = "pcapflow-table/4"

// ErrState means a saved table state cannot be read.
var ErrState = errors.New("unreadable flow table state")

const (
	stateEnded   = 1 << iota // f.ended
	stateSteady              // f.steady
	stateSeqInit             // f.seq.init
	stateSeqFin              // f.seq.fin
	stateSpans               // spans follow
	stateKeyed               // the key leads to this flow
	stateOwnBase             // the seq base follows (not the connection's)
	stateHigh                // high - next follows
	stateMissing             // the missing bytes follow
	stateLastCap             // lastCap - Capture follows
	stateActive              // active - Last follows
)

// Connection bits.
const (
	connSawData0 = 1 << iota
	connSawData1
	connBase0
	connBase1
	connSeen // seen follows
)

// seenOf is the seen bits a connection's history letters say, and how
// many letters there are.
func seenOf(h string) (seen [2]uint16, origIdx uint8, n int) {
	if len(h) > 0 && h[0] == '^' {
		origIdx, h = 1, h[1:]
	}
	for _, c := range h {
		side := int(origIdx)
		if c >= 'a' && c <= 'z' {
			side, c = 1-side, c-'a'+'A'
		}
		if i := strings.IndexRune(historyLetters, c); i >= 0 {
			seen[side] |= 1 << i
		}
	}
	return seen, origIdx, len(h)
}

type stateEnc struct{ b []byte }

func (e *stateEnc) u(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *stateEnc) i(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *stateEnc) raw(p []byte) { e.b = append(e.b, p...) }
func (e *stateEnc) byte(v uint8) { e.b = append(e.b, v) }

// stateDec reads a state; a malformed one marks it Bad (varint.Reader)
// and every later read returns zero.
type stateDec struct{ varint.Reader }

func (d *stateDec) fail()             { d.Bytes(-1) }
func (d *stateDec) u() uint64         { return d.Uvarint() }
func (d *stateDec) i() int64          { return d.Varint() }
func (d *stateDec) raw(n int) []byte  { return d.Bytes(n) }
func (d *stateDec) byte() uint8       { return d.Byte() }
func (d *stateDec) count(min int) int { return d.Count(min) }

// err is ErrState once anything was malformed.
func (d *stateDec) err() error {
	if d.Bad {
		return ErrState
	}
	return nil
}

func (e *stateEnc) key(k *Key) {
	alen := 4
	if k.IPVersion == 6 {
		alen = 16
	}
	e.byte(k.IPVersion)
	e.raw(k.Src[:alen])
	e.raw(k.Dst[:alen])
	e.u(uint64(k.SrcPort))
	e.u(uint64(k.DstPort))
	e.byte(k.NumVLAN)
	for _, v := range k.VLANs() {
		e.u(uint64(v))
	}
	e.byte(k.Proto)
	e.byte(uint8(k.TunnelType))
	e.u(uint64(k.Tunnel))
	e.u(uint64(k.TunnelID))
}

func (d *stateDec) key(k *Key) {
	k.IPVersion = d.byte()
	alen := 4
	if k.IPVersion == 6 {
		alen = 16
	}
	copy(k.Src[:], d.raw(alen))
	copy(k.Dst[:], d.raw(alen))
	k.SrcPort = uint16(d.u())
	k.DstPort = uint16(d.u())
	k.NumVLAN = d.byte()
	if k.NumVLAN > MaxVLAN {
		d.Fail()
		return
	}
	for i := 0; i < int(k.NumVLAN); i++ {
		k.VLAN[i] = uint16(d.u())
	}
	k.Proto = d.byte()
	k.TunnelType = pcapio.TunnelType(d.byte())
	k.Tunnel = uint32(d.u())
	k.TunnelID = uint32(d.u())
}

// MarshalState encodes the live state (see the format above); flows
// lists the live flows' slots in ID order (LiveFlows). The table must
// have no held fragments (call EndCapture first), which is how an index
// run ends.
func (t *Table) MarshalState(flows []int32) ([]byte, error) {
	if t.nheld > 0 {
		return nil, fmt.Errorf("flow table: %d fragments still held", t.nheld)
	}
	e := &stateEnc{b: make([]byte, 0, 64+16*len(flows))}
	e.raw([]byte(stateVersion))
	e.u(t.nextID)
	e.i(t.clock)
	e.u(uint64(t.capture))
	pos := make([]int32, t.nslots) // by slot: the flow's position in flows
	e.u(uint64(len(flows)))
	var prev uint64
	for i, fi := range flows {
		pos[fi] = int32(i)
		id := t.Flow(fi).ID
		e.u(id - prev)
		prev = id
	}
	conns := t.liveConns()
	e.u(uint64(len(conns)))
	prevPos := int32(0)
	for _, ci := range conns {
		c := t.conn(ci)
		p0 := pos[c.flows[0]]
		e.u(uint64(p0 - prevPos))
		prevPos = p0
		if c.flows[1] < 0 {
			e.u(0)
		} else {
			e.u(uint64(pos[c.flows[1]] - p0))
		}
		e.byte(uint8(c.state[0]) | uint8(c.state[1])<<3)
		var bits uint8
		for s := 0; s < 2; s++ {
			if c.sawData[s] {
				bits |= connSawData0 << s
			}
			if c.hasBase[s] {
				bits |= connBase0 << s
			}
		}
		if seen, _, n := seenOf(c.zeekHistory().String()); seen != c.seen || n >= len(c.history) || c.proto != 6 {
			bits |= connSeen
		}
		e.byte(bits)
		if bits&connSeen != 0 {
			e.u(uint64(c.seen[0]))
			e.u(uint64(c.seen[1]))
		}
		for s := 0; s < 2; s++ {
			if c.hasBase[s] {
				e.b = binary.BigEndian.AppendUint32(e.b, c.base[s])
			}
		}
	}
	keyed := t.keyedSlots()
	for _, fi := range flows {
		f := t.Flow(fi)
		c := t.conn(f.conn)
		side := t.sideOf(c, fi)
		s := &f.seq
		spans := t.spans[fi]
		var fl uint64
		for _, b := range []struct {
			on  bool
			bit uint64
		}{{f.ended, stateEnded}, {f.steady, stateSteady}, {s.init, stateSeqInit}, {s.fin, stateSeqFin},
			{s.hasSpans && len(spans) > 0, stateSpans}, {keyed[fi>>6]&(1<<(fi&63)) != 0, stateKeyed},
			{!(c.hasBase[side] && c.base[side] == s.base), stateOwnBase}, {s.high != s.next, stateHigh},
			{f.MissingBytes != 0, stateMissing}, {f.lastCap != int32(f.Capture), stateLastCap},
			{f.active != f.Last, stateActive}} {
			if b.on {
				fl |= b.bit
			}
		}
		e.u(fl)
		if fl&stateOwnBase != 0 {
			e.u(uint64(s.base))
		}
		e.u(s.next)
		if fl&stateHigh != 0 {
			e.u(s.high - s.next)
		}
		if s.fin {
			e.i(int64(s.finAt) - int64(s.next))
		}
		if fl&stateSpans != 0 {
			e.u(uint64(len(spans)))
			for _, x := range spans {
				e.u(x.lo)
				e.u(x.hi)
			}
		}
		if fl&stateMissing != 0 {
			e.u(f.MissingBytes)
		}
		if fl&stateLastCap != 0 {
			e.i(int64(f.lastCap) - int64(f.Capture))
		}
		if fl&stateActive != 0 {
			e.i(f.active - f.Last)
		}
	}
	var tagged []Key
	for k, ref := range t.tagged {
		if t.Flow(ref.slot).ID == ref.id {
			tagged = append(tagged, k)
		}
	}
	slices.SortFunc(tagged, func(a, b Key) int { return cmp.Compare(t.tagged[a].id, t.tagged[b].id) })
	e.u(uint64(len(tagged)))
	for _, k := range tagged {
		e.key(&k)
		e.u(uint64(pos[t.tagged[k].slot]))
	}
	type fe struct {
		k fragKey
		e fragEntry
	}
	var frags []fe
	for k, v := range t.frags {
		if t.Flow(v.flow).ID == v.id {
			frags = append(frags, fe{k, v})
		}
	}
	slices.SortFunc(frags, func(a, b fe) int {
		if a.e.id != b.e.id {
			return cmp.Compare(a.e.id, b.e.id)
		}
		return cmp.Compare(a.k.id, b.k.id)
	})
	e.u(uint64(len(frags)))
	for _, x := range frags {
		e.raw(x.k.src[:])
		e.raw(x.k.dst[:])
		e.u(uint64(x.k.id))
		e.byte(x.k.proto)
		e.byte(x.k.ver)
		e.u(uint64(x.k.vlan))
		e.u(uint64(pos[x.e.flow]))
		e.i(x.e.ts)
	}
	type te struct {
		k tunnelEnds
		n uint32
	}
	var tuns []te
	for k, n := range t.tunnels {
		tuns = append(tuns, te{k, n})
	}
	slices.SortFunc(tuns, func(a, b te) int { return cmp.Compare(a.n, b.n) })
	e.u(uint64(len(tuns)))
	for _, x := range tuns {
		e.raw(x.k.a[:])
		e.raw(x.k.b[:])
		e.byte(x.k.ver)
		e.byte(x.k.nvlan)
		for _, v := range x.k.vlan {
			e.u(uint64(v))
		}
		e.u(uint64(x.k.outer))
		e.u(uint64(x.n))
	}
	return e.b, nil
}

// StateIDs returns the IDs of the live flows a state holds, in order.
func StateIDs(state []byte) ([]uint64, error) {
	d := &stateDec{varint.Reader{B: state}}
	return d.header(nil)
}

// header reads the state up to the flows' IDs.
func (d *stateDec) header(t *Table) ([]uint64, error) {
	if string(d.raw(len(stateVersion))) != stateVersion {
		return nil, fmt.Errorf("%w: not %s", ErrState, stateVersion)
	}
	next, clock, capture := d.u(), d.i(), d.u()
	if t != nil {
		t.nextID, t.clock, t.capture = next, clock, int32(capture)
	}
	n := d.count(1)
	ids := make([]uint64, 0, n)
	var id uint64
	for i := 0; i < n && d.err() == nil; i++ {
		id += d.u()
		ids = append(ids, id)
	}
	return ids, d.err()
}

// RestoreTable makes a table with opts from a state MarshalState wrote
// (with the same options). records gives each live flow's record as it
// stood at the commit (Snapshot's). It is asked for each live flow once,
// in ID order, and the record it returns is copied before the next call:
// so a caller can decode the records as it goes instead of holding all of
// them. The live flows are in slots 0, 1, ... in ID order, as LiveFlows
// lists them.
func RestoreTable(opts Options, state []byte, records func(id uint64) (*Flow, error)) (*Table, error) {
	d := &stateDec{varint.Reader{B: state}}
	opts.FirstID = 0
	t := NewTable(opts)
	ids, err := d.header(t)
	if err != nil {
		return nil, err
	}
	nf := len(ids)
	slots := make([]int32, nf)
	// Each connection's history starts from its records' (who opened it
	// and how far it got), which the table's copies do not keep.
	hist := make([]History, nf)
	for i, id := range ids {
		rec, err := records(id)
		if err != nil {
			return nil, err
		}
		fi := t.allocFlow()
		slots[i] = fi
		f := t.Flow(fi)
		*f = *rec
		hist[i] = f.History
		f.State, f.History = 0, History{}
		t.live++
	}
	pos := func(p uint64) int32 {
		if p >= uint64(nf) {
			d.Fail()
			return -1
		}
		return slots[p]
	}
	nc := d.count(4)
	cslots := make([]int32, 0, nc)
	p0 := uint64(0)
	for i := 0; i < nc && d.err() == nil; i++ {
		var c conn
		p0 += d.u()
		d1 := d.u()
		c.flows = [2]int32{pos(p0), -1}
		if d1 > 0 {
			c.flows[1] = pos(p0 + d1)
		}
		if d.err() != nil {
			break
		}
		st := d.byte()
		c.state = [2]epState{epState(st & 7), epState(st >> 3 & 7)}
		bits := d.byte()
		// Who opened it and how far it got are in the records.
		f := t.Flow(c.flows[0])
		h := hist[p0].String()
		seen, origIdx, _ := seenOf(h)
		c.origIdx, c.flipped = origIdx, origIdx == 1
		if c.flipped {
			h = h[1:]
		}
		c.histLen = uint8(copy(c.history[:], h))
		if bits&connSeen != 0 {
			seen = [2]uint16{uint16(d.u()), uint16(d.u())}
		}
		c.seen = seen
		for s := 0; s < 2; s++ {
			c.sawData[s] = bits&(connSawData0<<s) != 0
			c.hasBase[s] = bits&(connBase0<<s) != 0
			if c.hasBase[s] {
				c.base[s] = binary.BigEndian.Uint32(d.raw(4))
			}
		}
		c.proto = f.Key.Proto
		t.serial++
		c.serial = t.serial
		ci := t.addConnRestored(c)
		cslots = append(cslots, ci)
		for _, fi := range c.flows {
			if fi >= 0 {
				t.Flow(fi).conn = ci
			}
		}
	}
	for i := 0; i < nf && d.err() == nil; i++ {
		fi := slots[i]
		f := t.Flow(fi)
		c := t.conn(f.conn)
		if c.serial == 0 || (c.flows[0] != fi && c.flows[1] != fi) {
			d.Fail() // a flow in no connection
			break
		}
		side := t.sideOf(c, fi)
		fl := d.u()
		f.ended, f.steady = fl&stateEnded != 0, fl&stateSteady != 0
		c.ended = c.ended || f.ended
		s := &f.seq
		s.init, s.fin = fl&stateSeqInit != 0, fl&stateSeqFin != 0
		s.base = c.base[side]
		if fl&stateOwnBase != 0 {
			s.base = uint32(d.u())
		}
		s.next = d.u()
		s.high = s.next
		if fl&stateHigh != 0 {
			s.high += d.u()
		}
		if s.fin {
			s.finAt = uint64(int64(s.next) + d.i())
		}
		if fl&stateSpans != 0 {
			sp := make([]span, d.count(2))
			for j := range sp {
				sp[j] = span{d.u(), d.u()}
			}
			if t.spans == nil {
				t.spans = map[int32][]span{}
			}
			t.spans[fi] = sp
			s.hasSpans = true
		}
		f.MissingBytes = 0
		if fl&stateMissing != 0 {
			f.MissingBytes = d.u()
		}
		f.lastCap = int32(f.Capture)
		if fl&stateLastCap != 0 {
			f.lastCap += int32(d.i())
		}
		f.active = f.Last
		if fl&stateActive != 0 {
			f.active += d.i()
		}
		if fl&stateKeyed != 0 {
			t.put(fi)
		}
	}
	pos = func(p uint64) int32 {
		if p > uint64(nf) || p == 0 {
			d.Fail()
			return -1
		}
		return slots[p-1]
	}
	for n := d.count(10); n > 0 && d.err() == nil; n-- {
		var k Key
		d.key(&k)
		if fi := pos(d.u() + 1); fi >= 0 {
			t.tagged[k] = slotRef{fi, t.Flow(fi).ID}
		}
	}
	for n := d.count(36); n > 0 && d.err() == nil; n-- {
		var k fragKey
		copy(k.src[:], d.raw(16))
		copy(k.dst[:], d.raw(16))
		k.id = uint32(d.u())
		k.proto = d.byte()
		k.ver = d.byte()
		k.vlan = uint16(d.u())
		fi := pos(d.u() + 1)
		ts := d.i()
		if fi >= 0 {
			t.frags[k] = fragEntry{fi, t.Flow(fi).ID, ts}
		}
	}
	for n := d.count(36); n > 0 && d.err() == nil; n-- {
		var k tunnelEnds
		copy(k.a[:], d.raw(16))
		copy(k.b[:], d.raw(16))
		k.ver = d.byte()
		k.nvlan = d.byte()
		for i := range k.vlan {
			k.vlan[i] = uint16(d.u())
		}
		k.outer = uint32(d.u())
		if t.tunnels == nil {
			t.tunnels = map[tunnelEnds]uint32{}
		}
		t.tunnels[k] = uint32(d.u())
	}
	if d.err() == nil && len(d.B) != 0 {
		d.Fail()
	}
	if d.err() != nil {
		return nil, d.err()
	}
	// Every live connection's deadline, computed as its expiry would.
	if t.idle > 0 {
		t.deadline.heap = make(deadlines, 0, len(cslots))
		for _, ci := range cslots {
			c := t.conn(ci)
			due := t.lastActive(c)
			if c.closed() {
				due += t.closeTO
			} else {
				due += t.idle
			}
			t.deadline.push(deadline{at: due, conn: ci, serial: uint32(c.serial)}, byOther)
		}
	}
	return t, nil
}

// addConnRestored stores a restored connection, keeping its serial.
func (t *Table) addConnRestored(c conn) int32 {
	ci := t.nconns
	t.conns = withRoom(t.conns, ci)
	t.nconns++
	*t.conn(ci) = c
	return ci
}
