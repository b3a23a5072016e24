package flow

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/pcapflow/pcapflow/pcapio"
)

// The live state of a table, as an index stores it between runs so that
// a capture added later continues the connections still open at the end
// of the archive. It holds everything that decides how later packets are
// accounted: the live flows and connections with their sequence
// tracking, which flow each key and each fragment train leads to, the
// tunnel endpoints, the clock and the next ID. Restoring it and adding
// packets gives the same flows as never having stopped.
//
//	"pcapflow-table/1"
//	uvarint nextID, serial; varint clock; uvarint capture
//	uvarint #conns, conn*        (in the order of their first flow's ID)
//	uvarint #flows, flow*        (in ID order; conns refer to them by position)
//	uvarint #tagged, (key, flow position)*
//	uvarint #frags, (fragKey, flow position, varint ts)*
//	uvarint #tunnels, (tunnelEnds, uvarint n)*
//
// Flows in a connection, the key index and fragment entries refer to
// flows by their position in the list; flows refer to connections the
// same way.
const stateVersion = "pcapflow-table/1"

// ErrState means a saved table state cannot be read.
var ErrState = errors.New("unreadable flow table state")

type stateEnc struct{ b []byte }

func (e *stateEnc) u(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *stateEnc) i(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *stateEnc) raw(p []byte) { e.b = append(e.b, p...) }
func (e *stateEnc) bool(v bool)  { e.raw([]byte{b2u(v)}) }
func (e *stateEnc) byte(v uint8) { e.b = append(e.b, v) }
func (e *stateEnc) u32(v uint32) { e.u(uint64(v)) }
func b2u(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

type stateDec struct {
	b   []byte
	err error
}

func (d *stateDec) fail() {
	if d.err == nil {
		d.err = ErrState
	}
	d.b = nil
}

func (d *stateDec) u() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stateDec) i() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stateDec) raw(n int) []byte {
	if len(d.b) < n {
		d.fail()
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *stateDec) byte() uint8 { return d.raw(1)[0] }
func (d *stateDec) bool() bool  { return d.byte() != 0 }

// count reads a length and checks it against the bytes left (each item
// takes at least min bytes), so corrupt input cannot allocate much.
func (d *stateDec) count(min int) int {
	n := d.u()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (e *stateEnc) key(k *Key) {
	e.raw(k.Src[:])
	e.raw(k.Dst[:])
	e.u(uint64(k.SrcPort))
	e.u(uint64(k.DstPort))
	e.byte(k.NumVLAN)
	for _, v := range k.VLAN {
		e.u(uint64(v))
	}
	e.byte(k.Proto)
	e.byte(k.IPVersion)
	e.byte(uint8(k.TunnelType))
	e.u32(k.Tunnel)
	e.u32(k.TunnelID)
}

func (d *stateDec) key(k *Key) {
	copy(k.Src[:], d.raw(16))
	copy(k.Dst[:], d.raw(16))
	k.SrcPort = uint16(d.u())
	k.DstPort = uint16(d.u())
	k.NumVLAN = d.byte()
	if k.NumVLAN > MaxVLAN {
		d.fail()
	}
	for i := range k.VLAN {
		k.VLAN[i] = uint16(d.u())
	}
	k.Proto = d.byte()
	k.IPVersion = d.byte()
	k.TunnelType = pcapio.TunnelType(d.byte())
	k.Tunnel = uint32(d.u())
	k.TunnelID = uint32(d.u())
}

// MarshalState encodes the live state (see the format above). The table
// must have no held fragments (call EndCapture first), which is how an
// index run ends.
func (t *Table) MarshalState() ([]byte, error) {
	if t.nheld > 0 {
		return nil, fmt.Errorf("flow table: %d fragments still held", t.nheld)
	}
	e := &stateEnc{b: []byte(stateVersion)}
	e.u(t.nextID)
	e.u(t.serial)
	e.i(t.clock)
	e.u(uint64(t.capture))
	conns := t.liveConns()
	flows := t.LiveFlows()
	fpos := make(map[int32]int, len(flows))
	for i, fi := range flows {
		fpos[fi] = i
	}
	cpos := make(map[int32]int, len(conns))
	e.u(uint64(len(conns)))
	for i, ci := range conns {
		cpos[ci] = i
		c := t.conn(ci)
		e.u(c.serial)
		for _, fi := range c.flows {
			if fi < 0 {
				e.u(0)
			} else {
				e.u(uint64(fpos[fi] + 1))
			}
		}
		e.byte(c.origIdx)
		e.bool(c.flipped)
		e.bool(c.ended)
		for s := 0; s < 2; s++ {
			e.byte(uint8(c.state[s]))
			e.bool(c.sawData[s])
			e.u(uint64(c.seen[s]))
			e.u32(c.base[s])
			e.bool(c.hasBase[s])
		}
		e.byte(c.histLen)
		e.raw(c.history[:c.histLen])
		e.byte(c.proto)
	}
	e.u(uint64(len(flows)))
	for _, fi := range flows {
		f := t.Flow(fi)
		e.key(&f.Key)
		e.u(uint64(cpos[f.conn]))
		e.u(f.Packets)
		e.u(f.Bytes)
		e.u(f.PayloadBytes)
		e.i(f.First)
		e.i(f.Last)
		e.byte(f.TCPFlags)
		s := &f.seq
		e.bool(s.init)
		e.u32(s.base)
		e.u(s.next)
		e.u(s.high)
		e.bool(s.fin)
		e.u(s.finAt)
		spans := t.spans[fi]
		if !s.hasSpans {
			spans = nil
		}
		e.u(uint64(len(spans)))
		for _, x := range spans {
			e.u(x.lo)
			e.u(x.hi)
		}
		e.bool(f.ended)
		e.bool(f.steady)
		e.i(int64(f.lastCap))
		e.i(f.active)
		e.u(f.ID)
		e.u(f.Peer)
		e.u(uint64(f.Capture))
		e.bool(f.HasSrcMAC)
		e.bool(f.HasDstMAC)
		e.raw(f.SrcMAC[:])
		e.raw(f.DstMAC[:])
		e.u(f.Outer)
		e.byte(f.Depth)
		e.u(f.MissingBytes)
		e.u(f.RetransBytes)
		e.u(f.OverlapBytes)
		e.bool(t.get(&f.Key) == fi) // the key leads to this flow
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
		e.u(uint64(fpos[t.tagged[k].slot]))
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
		e.u32(x.k.id)
		e.byte(x.k.proto)
		e.byte(x.k.ver)
		e.u(uint64(x.k.vlan))
		e.u(uint64(fpos[x.e.flow]))
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
		e.u32(x.k.outer)
		e.u32(x.n)
	}
	return e.b, nil
}

// RestoreTable makes a table with opts from a state MarshalState wrote
// (with the same options). Its live flows are in slots 0, 1, ... in ID
// order, as LiveFlows lists them.
func RestoreTable(opts Options, state []byte) (*Table, error) {
	d := &stateDec{b: state}
	if string(d.raw(len(stateVersion))) != stateVersion {
		return nil, fmt.Errorf("%w: not %s", ErrState, stateVersion)
	}
	opts.FirstID = 0
	t := NewTable(opts)
	t.nextID = d.u()
	t.serial = d.u()
	t.clock = d.i()
	t.capture = int32(d.u())
	nc := d.count(16)
	type savedConn struct {
		c     conn
		flows [2]uint64
	}
	conns := make([]savedConn, nc)
	for i := range conns {
		c := &conns[i].c
		c.serial = d.u()
		conns[i].flows = [2]uint64{d.u(), d.u()}
		c.origIdx = d.byte()
		c.flipped = d.bool()
		c.ended = d.bool()
		for s := 0; s < 2; s++ {
			c.state[s] = epState(d.byte())
			c.sawData[s] = d.bool()
			c.seen[s] = uint16(d.u())
			c.base[s] = uint32(d.u())
			c.hasBase[s] = d.bool()
		}
		c.histLen = d.byte()
		if int(c.histLen) > len(c.history) {
			d.fail()
			break
		}
		copy(c.history[:], d.raw(int(c.histLen)))
		c.proto = d.byte()
	}
	nf := d.count(40)
	if d.err != nil {
		return nil, d.err
	}
	cslot := make([]int32, nc)
	for i := range conns {
		cslot[i] = t.addConnRestored(conns[i].c)
	}
	slots := make([]int32, nf)
	for i := 0; i < nf && d.err == nil; i++ {
		fi := t.allocFlow()
		slots[i] = fi
		f := t.Flow(fi)
		*f = Flow{}
		d.key(&f.Key)
		cp := d.u()
		if cp >= uint64(nc) {
			d.fail()
			break
		}
		f.conn = cslot[cp]
		f.Packets = d.u()
		f.Bytes = d.u()
		f.PayloadBytes = d.u()
		f.First = d.i()
		f.Last = d.i()
		f.TCPFlags = d.byte()
		s := &f.seq
		s.init = d.bool()
		s.base = uint32(d.u())
		s.next = d.u()
		s.high = d.u()
		s.fin = d.bool()
		s.finAt = d.u()
		if ns := d.count(2); ns > 0 {
			sp := make([]span, ns)
			for j := range sp {
				sp[j] = span{d.u(), d.u()}
			}
			if t.spans == nil {
				t.spans = map[int32][]span{}
			}
			t.spans[fi] = sp
			s.hasSpans = true
		}
		f.ended = d.bool()
		f.steady = d.bool()
		f.lastCap = int32(d.i())
		f.active = d.i()
		f.ID = d.u()
		f.Peer = d.u()
		f.Capture = int(d.u())
		f.HasSrcMAC = d.bool()
		f.HasDstMAC = d.bool()
		copy(f.SrcMAC[:], d.raw(6))
		copy(f.DstMAC[:], d.raw(6))
		f.Outer = d.u()
		f.Depth = d.byte()
		f.MissingBytes = d.u()
		f.RetransBytes = d.u()
		f.OverlapBytes = d.u()
		if d.bool() {
			t.put(fi)
		}
		t.live++
	}
	if d.err != nil {
		return nil, d.err
	}
	for i := range conns {
		c := t.conn(cslot[i])
		for s, p := range conns[i].flows {
			c.flows[s] = -1
			if p > 0 {
				if p > uint64(nf) {
					return nil, ErrState
				}
				c.flows[s] = slots[p-1]
			}
		}
	}
	pos := func() int32 {
		p := d.u()
		if p >= uint64(nf) {
			d.fail()
			return 0
		}
		return slots[p]
	}
	for n := d.count(40); n > 0 && d.err == nil; n-- {
		var k Key
		d.key(&k)
		fi := pos()
		if d.err == nil {
			t.tagged[k] = slotRef{fi, t.Flow(fi).ID}
		}
	}
	for n := d.count(40); n > 0 && d.err == nil; n-- {
		var k fragKey
		copy(k.src[:], d.raw(16))
		copy(k.dst[:], d.raw(16))
		k.id = uint32(d.u())
		k.proto = d.byte()
		k.ver = d.byte()
		k.vlan = uint16(d.u())
		fi := pos()
		ts := d.i()
		if d.err == nil {
			t.frags[k] = fragEntry{fi, t.Flow(fi).ID, ts}
		}
	}
	for n := d.count(40); n > 0 && d.err == nil; n-- {
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
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	// Every live connection's deadline, computed as its expiry would.
	if t.idle > 0 {
		for _, ci := range cslot {
			c := t.conn(ci)
			due := t.lastActive(c)
			if c.closed() {
				due += t.closeTO
			} else {
				due += t.idle
			}
			t.deadline.push(deadline{at: due, conn: ci, serial: c.serial})
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
