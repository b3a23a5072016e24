package flow

import (
	"cmp"
	"slices"
	"time"
	"unsafe"

	"github.com/pcapflow/pcapflow/pcapio"
)

// Default timeouts of a Table (see Options).
//
// DefaultCloseTimeout is Zeek's tcp_close_delay. It was 10 s until the
// seventh session of issue 16: on the 2 GB real capture 96% of the flows
// in memory at the peak were closed connections waiting out the delay,
// and 5 s gave the same flows there and on the corpus, the run peaking
// at 274 MB instead of 369 (docs/flows.md).
const (
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultCloseTimeout = 5 * time.Second
)

// Options configure a Table.
type Options struct {
	// FirstID is the ID of the table's first flow (an archive that grows
	// continues its IDs). 0 means 1.
	FirstID uint64
	// IdleTimeout ends a connection that has had no packet, in either
	// direction, for longer than this (capture time); a later packet with
	// its key starts a new flow. 0 means never: every flow stays in memory
	// until Finish.
	IdleTimeout time.Duration
	// CloseTimeout ends a closed TCP connection (a RST, or a FIN each
	// way) after this much silence; stragglers later than that start a
	// new flow. 0 means DefaultCloseTimeout; IdleTimeout when that is
	// shorter. It has no effect when IdleTimeout is 0.
	CloseTimeout time.Duration
	// OnEnd is called when a connection ends (timeouts, Finish) with its
	// flows (one or two), finished: counters, state and history are
	// final. The flows are only valid during the call; their slots are
	// reused after it.
	OnEnd func(flows []Ended)
	// OnAttach is called for packets that were held back (fragments that
	// arrived before their datagram's first fragment) once the flow they
	// belong to is known. The counters of the flow already include them.
	OnAttach func(flow int32, h Held)
	// OnStart is called when a flow starts, after its key, first time,
	// MACs, peer and tunnel are set and before its first packet is
	// counted.
	OnStart func(flow int32)
	// OnCapture is called when a flow gets its first packet in a capture
	// (see SetCapture), including the capture it starts in.
	OnCapture func(flow int32, capture int)
	// MaxHeld bounds held fragments; beyond it, an unplaceable fragment
	// goes straight to its portless flow. 0 means 65536.
	MaxHeld int
}

// Ended is a flow whose connection ended, and the slot it had.
type Ended struct {
	Slot int32
	Flow *Flow
}

// Held is a packet the table held back until its flow was known.
type Held struct {
	Index   int64 // the record's position in its capture (pcapio.Record.Index)
	Capture int32
	TS      int64
	wire    int32
}

// Stats counts the packets a table saw.
type Stats struct {
	Packets    uint64                     // every packet given to Add
	Problems   [pcapio.NumProblems]uint64 // packets that decoded to no IP flow, by reason
	Held       uint64                     // fragments held until their first fragment
	InnerNotIP uint64                     // tunnel payloads that decoded to no IP packet
	Orphans    uint64                     // fragments whose first fragment never came
}

const chunkBits = 12

type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	ver      uint8
	vlan     uint16
}

// fragEntry remembers the flow of a datagram's first fragment. The flow's
// ID is kept with its slot: the slot is reused once the flow ends.
type fragEntry struct {
	flow int32
	id   uint64
	ts   int64
}

// slotRef is a flow slot with the ID of the flow that was in it, so that
// a reference outliving its flow is recognised.
type slotRef struct {
	slot int32
	id   uint64
}

// Table tracks the live flows of an archive: packets come in capture
// order, across any number of captures, and a connection ends when it
// has been silent for a timeout (Options). Memory grows with the flows
// alive at once (about 300 bytes each: a Flow and its share of a
// connection record), never with packets or with the flows that have
// ended. It is not safe for concurrent use.
type Table struct {
	opts    Options
	idle    int64 // ns; 0: connections never time out
	closeTO int64
	keys    keyIndex // current flow of each key
	// tagged holds flows with VLAN tags under their key without tags, so
	// that a direction tagged on the wire finds its untagged reverse (SPAN
	// ports often see one direction of a routed conversation tagged).
	tagged   map[Key]slotRef
	chunks   [][]Flow // flow slots, in fixed-size chunks so pointers stay valid
	nslots   int32
	freeF    []int32 // slots of ended flows, reused
	conns    [][]conn
	nconns   int32
	freeC    []int32
	ends     [2]Ended // endConn's, to OnEnd: a local escapes, 21 MB of garbage on the 2 GB real capture
	nextID   uint64
	serial   uint64 // connections made so far: orders them by age
	live     int
	frags    map[fragKey]fragEntry
	held     map[fragKey][]Held
	nheld    int
	sweepAt  int64
	stats    Stats
	spans    map[int32][]span // out-of-order ranges seen, for flows with holes
	ctx      *tunnelCtx       // set during AddInner
	tunnels  map[tunnelEnds]uint32
	clock    int64 // the latest packet time seen: the archive's "now"
	deadline deadlineQueue
	// compactAt is the queue length at which compactDeadlines runs next.
	compactAt int
	capture   int32
	// prefetched sums what Prefetch read, which nothing uses.
	prefetched uint64
	// warm is how far expire has read ahead for the deadline at the head
	// of the queue (warmConn, warmSerial): see warmNext.
	warm       uint8
	warmConn   int32
	warmSerial uint32
	noWarm     bool // tests: no warming, to compare
}

// NewTable returns an empty table.
func NewTable(opts Options) *Table {
	opts.FirstID = cmp.Or(opts.FirstID, 1)
	opts.MaxHeld = cmp.Or(opts.MaxHeld, 65536)
	t := &Table{
		opts:   opts,
		nextID: opts.FirstID,
		tagged: make(map[Key]slotRef),
		frags:  make(map[fragKey]fragEntry),
		held:   make(map[fragKey][]Held),
		clock:  -1 << 63,
	}
	if opts.IdleTimeout > 0 {
		t.idle = int64(opts.IdleTimeout)
		t.closeTO = int64(opts.CloseTimeout)
		if t.closeTO <= 0 {
			t.closeTO = int64(DefaultCloseTimeout)
		}
		t.closeTO = min(t.closeTO, t.idle)
	}
	t.keys.init()
	return t
}

// Options returns the options the table was made with.
func (t *Table) Options() Options { return t.opts }

// Live is the number of flows in memory: those whose connection has not
// ended.
func (t *Table) Live() int { return t.live }

// Flow returns the flow in a slot (as Add returns it). The pointer stays
// valid until the flow's connection ends.
func (t *Table) Flow(i int32) *Flow { return &t.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

func (t *Table) conn(i int32) *conn { return &t.conns[i>>chunkBits][i&(1<<chunkBits-1)] }

// withRoom returns chunks with room for element i, the next one: a new
// chunk when the last is full, so that elements never move.
func withRoom[T any](chunks [][]T, i int32) [][]T {
	if int(i>>chunkBits) == len(chunks) {
		chunks = append(chunks, make([]T, 1<<chunkBits))
	}
	return chunks
}

// allocFlow returns a free flow slot.
func (t *Table) allocFlow() int32 {
	if n := len(t.freeF); n > 0 {
		fi := t.freeF[n-1]
		t.freeF = t.freeF[:n-1]
		return fi
	}
	fi := t.nslots
	t.chunks = withRoom(t.chunks, fi)
	t.nslots++
	return fi
}

// addConn stores c and returns its slot.
func (t *Table) addConn(c conn) int32 {
	var ci int32
	if n := len(t.freeC); n > 0 {
		ci = t.freeC[n-1]
		t.freeC = t.freeC[:n-1]
	} else {
		ci = t.nconns
		t.conns = withRoom(t.conns, ci)
		t.nconns++
	}
	t.serial++
	c.serial = t.serial
	*t.conn(ci) = c
	if t.idle > 0 {
		if t.deadline.len() >= t.compactAt {
			t.compactDeadlines()
		}
		t.deadline.push(deadline{at: t.clock + t.idle, conn: ci, serial: uint32(c.serial)}, byIdle)
	}
	return ci
}

// Stats reports what the table has seen.
func (t *Table) Stats() Stats { return t.stats }

// NextID is the ID the next new flow will get.
func (t *Table) NextID() uint64 { return t.nextID }

// Clock is the latest packet time the table has seen (ns), or the
// smallest int64 before the first packet.
func (t *Table) Clock() int64 { return t.clock }

// SetCapture says that the packets that follow come from capture ci
// (captures are numbered by the caller, in the order they are read).
func (t *Table) SetCapture(ci int) { t.capture = int32(ci) }

// Add accounts one packet and returns the slot of its flow, or -1 when
// the packet belongs to no flow (not IP) or is held back until its flow
// is known (see Options.OnAttach). Connections whose timeout passed
// before this packet's time end first.
func (t *Table) Add(rec *pcapio.Record, p *pcapio.Packet) int32 { return t.packet(rec, p, nil, 0) }

// AddKeyed is Add for a packet whose key and its hash the caller made
// already (k = KeyOf(p), h = k.Hash()), as the indexer does on the core
// that decodes, so that the table's core does not make them again.
func (t *Table) AddKeyed(rec *pcapio.Record, p *pcapio.Packet, k *Key, h uint64) int32 {
	return t.packet(rec, p, k, h)
}

// packet is Add and AddKeyed.
func (t *Table) packet(rec *pcapio.Record, p *pcapio.Packet, k *Key, h uint64) int32 {
	t.stats.Packets++
	if rec.Timestamp > t.clock {
		t.clock = rec.Timestamp
		t.expire()
	}
	if p.IPVersion == 0 {
		t.stats.Problems[p.Problem]++
		return -1
	}
	return t.add(rec, p, k, h)
}

// add accounts an IP packet; k and h are its key and hash, or nil and 0
// to make them here.
func (t *Table) add(rec *pcapio.Record, p *pcapio.Packet, k *Key, h uint64) int32 {
	ts := rec.Timestamp
	if p.Fragment {
		return t.fragment(rec, p)
	}
	if k == nil {
		kk := t.keyOf(p)
		k, h = &kk, hashKey(&kk)
	}
	fi := t.lookup(k, h, p, ts)
	t.account(fi, p, ts, rec.OrigLen)
	return fi
}

// fragment places an IP fragment: the first one carries the ports,
// later ones follow it by (addresses, protocol, identification).
func (t *Table) fragment(rec *pcapio.Record, p *pcapio.Packet) int32 {
	ts := rec.Timestamp
	fk := fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto, ver: p.IPVersion}
	if p.NumVLAN > 0 {
		fk.vlan = p.VLAN[0]
	}
	if p.FragOffset != 0 {
		e, ok := t.frags[fk]
		if ok && t.Flow(e.flow).ID != e.id {
			ok = false // its flow ended
		}
		if !ok {
			if t.nheld < t.opts.MaxHeld {
				t.held[fk] = append(t.held[fk], Held{rec.Index, t.capture, ts, int32(rec.OrigLen)})
				t.nheld++
				t.stats.Held++
				return -1
			}
			t.stats.Orphans++
			k := t.keyOf(p)
			k.SrcPort, k.DstPort = 0, 0
			fi := t.lookup(&k, hashKey(&k), p, ts)
			t.account(fi, p, ts, rec.OrigLen)
			return fi
		}
		e.ts = ts
		t.frags[fk] = e
		t.account(e.flow, p, ts, rec.OrigLen)
		return e.flow
	}
	k := t.keyOf(p)
	fi := t.lookup(&k, hashKey(&k), p, ts)
	t.account(fi, p, ts, rec.OrigLen)
	t.frags[fk] = fragEntry{fi, t.Flow(fi).ID, ts}
	if hs, ok := t.held[fk]; ok {
		delete(t.held, fk)
		t.nheld -= len(hs)
		t.attach(fi, hs)
	}
	t.sweepFrags(ts)
	return fi
}

// AddInner accounts the packet a tunnel carries: inner was decoded from
// the payload of a packet that Add (or AddInner) put in flow outer, whose
// decoded packet is outerPkt. It returns the inner flow, or -1.
func (t *Table) AddInner(rec *pcapio.Record, inner *pcapio.Packet, outer int32, outerPkt *pcapio.Packet) int32 {
	if outer < 0 {
		return -1
	}
	if inner.IPVersion == 0 {
		t.stats.InnerNotIP++
		return -1
	}
	of := t.Flow(outer)
	id := outerPkt.TunnelID
	if outerPkt.Tunnel == pcapio.TunnelGTPU {
		id = 0 // each direction has its own TEID
	}
	ctx := tunnelCtx{typ: outerPkt.Tunnel, id: id, conn: t.endpoints(&of.Key), outer: of.ID, depth: of.Depth + 1}
	t.ctx = &ctx
	defer func() { t.ctx = nil }()
	return t.add(rec, inner, nil, 0)
}

// endpoints interns the unordered pair of a tunnel's outer addresses (and
// its own context): the tunnel endpoints, whatever ports an encapsulation
// picks per packet for entropy (VXLAN, Geneve).
func (t *Table) endpoints(k *Key) uint32 {
	a, b := k.Src, k.Dst
	if string(a[:]) > string(b[:]) {
		a, b = b, a
	}
	e := tunnelEnds{a: a, b: b, ver: k.IPVersion, vlan: k.VLAN, nvlan: k.NumVLAN, outer: k.Tunnel}
	if n, ok := t.tunnels[e]; ok {
		return n
	}
	if t.tunnels == nil {
		t.tunnels = map[tunnelEnds]uint32{}
	}
	n := uint32(len(t.tunnels) + 1)
	t.tunnels[e] = n
	return n
}

type tunnelEnds struct {
	a, b  [16]byte
	ver   uint8
	nvlan uint8
	vlan  [MaxVLAN]uint16
	outer uint32 // for nested tunnels, the enclosing one
}

// tunnelCtx is the encapsulation of the packet being added.
type tunnelCtx struct {
	typ   pcapio.TunnelType
	id    uint32
	conn  uint32
	outer uint64 // ID of the outer flow
	depth uint8
}

// keyOf builds the key of p in the current encapsulation.
func (t *Table) keyOf(p *pcapio.Packet) Key {
	k := KeyOf(p)
	if c := t.ctx; c != nil {
		k.TunnelType, k.TunnelID, k.Tunnel = c.typ, c.id, c.conn
	}
	return k
}

func (t *Table) attach(fi int32, hs []Held) {
	f := t.Flow(fi)
	for _, h := range hs {
		f.Packets++
		f.Bytes += uint64(h.wire)
		if h.TS < f.First {
			f.First = h.TS
		}
		if h.TS > f.Last {
			f.Last = h.TS
		}
		if h.Capture != f.lastCap {
			t.touch(fi, f, int(h.Capture))
		}
		if t.opts.OnAttach != nil {
			t.opts.OnAttach(fi, h)
		}
	}
}

// touch records that flow fi has a packet in capture ci.
func (t *Table) touch(fi int32, f *Flow, ci int) {
	f.lastCap = int32(ci)
	if t.opts.OnCapture != nil {
		t.opts.OnCapture(fi, ci)
	}
}

// sweepFrags forgets fragment groups idle for a minute of capture time,
// so the fragment map stays small.
func (t *Table) sweepFrags(now int64) {
	if now < t.sweepAt || len(t.frags) < 1024 {
		return
	}
	t.sweepAt = now + 10e9
	for k, e := range t.frags {
		if now-e.ts > 60e9 || t.Flow(e.flow).ID != e.id {
			delete(t.frags, k)
		}
	}
}

// lookup finds or creates the current flow for k, whose hash is h.
func (t *Table) lookup(k *Key, h uint64, p *pcapio.Packet, ts int64) int32 {
	if fi := t.getHashed(k, h); fi >= 0 {
		f := t.Flow(fi)
		if k.Proto != pcapio.ProtoTCP || !f.ended {
			return fi
		}
		c := t.conn(f.conn)
		side := t.sideOf(c, fi)
		if p.TCPFlags&(pcapio.TCPSyn|pcapio.TCPAck) != pcapio.TCPSyn || (c.hasBase[side] && c.base[side] == p.Seq) {
			// Not a new connection (a SYN with the old connection's initial
			// sequence number is a late retransmission and stays in it),
			// unless the other direction already started a newer one (its
			// SYN came first): then this packet belongs to that one.
			if ri, rok := t.reverse(k, h); rok {
				if rc := t.conn(t.Flow(ri).conn); rc.serial > c.serial {
					return t.newFlow(k, p, ts, t.Flow(ri).conn)
				}
			}
			return fi
		}
		// Port reuse: a new connection on an ended one's key.
	}
	ci := int32(-1)
	if ri, rok := t.reverse(k, h); rok {
		rc := t.conn(t.Flow(ri).conn)
		side := 1 - t.sideOf(rc, ri)
		if rc.flows[side] < 0 && !(k.Proto == pcapio.ProtoTCP && rc.ended && p.TCPFlags&(pcapio.TCPSyn|pcapio.TCPAck) == pcapio.TCPSyn) {
			ci = t.Flow(ri).conn
		}
	}
	return t.newFlow(k, p, ts, ci)
}

// reverse finds the current flow of the opposite direction: the exact
// reverse key, else the same reverse key with or without VLAN tags.
func (t *Table) reverse(k *Key, h uint64) (int32, bool) {
	var r Key
	r.SetReverse(k)
	if fi := t.getHashed(&r, reverseHash(k, &r, h)); fi >= 0 {
		return fi, true
	}
	if r.NumVLAN > 0 {
		r.NumVLAN, r.VLAN = 0, [MaxVLAN]uint16{}
		if fi := t.get(&r); fi >= 0 {
			return fi, true
		}
	}
	if len(t.tagged) == 0 {
		return -1, false
	}
	if ref, ok := t.tagged[r]; ok && t.Flow(ref.slot).ID == ref.id {
		return ref.slot, true
	}
	return -1, false
}

func (t *Table) sideOf(c *conn, fi int32) int {
	if c.flows[0] == fi {
		return 0
	}
	return 1
}

// newFlow creates a flow for k (not a key in the table), joining
// connection ci (or a new one).
func (t *Table) newFlow(k *Key, p *pcapio.Packet, ts int64, ci int32) int32 {
	fi := t.allocFlow()
	f := t.Flow(fi)
	// Field by field into the slot: a Flow literal that reads p, which
	// could point into the slot, is built aside and copied (250 bytes).
	*f = Flow{}
	f.ID, f.Key, f.Capture, f.First, f.Last, f.active = t.nextID, *k, int(t.capture), ts, ts, t.clock
	f.SrcMAC, f.DstMAC, f.HasSrcMAC, f.HasDstMAC, f.lastCap = p.SrcMAC, p.DstMAC, p.HasSrcMAC, p.HasDstMAC, -1
	t.nextID++
	t.live++
	if c := t.ctx; c != nil {
		f.Outer, f.Depth = c.outer, c.depth
	}
	if ci < 0 {
		c := conn{flows: [2]int32{fi, -1}, proto: k.Proto}
		if k.Proto == pcapio.ProtoTCP && p.TCPFlags&(pcapio.TCPSyn|pcapio.TCPAck) == pcapio.TCPSyn|pcapio.TCPAck {
			// The first packet is a SYN-ACK: the other side opened it.
			c.origIdx, c.flipped = 1, true
		}
		ci = t.addConn(c)
	} else {
		c := t.conn(ci)
		side := 1
		if c.flows[0] < 0 {
			side = 0
		}
		c.flows[side] = fi
		if o := c.flows[1-side]; o >= 0 {
			of := t.Flow(o)
			f.Peer, of.Peer = of.ID, f.ID
		}
	}
	f.conn = ci
	t.put(fi)
	if k.NumVLAN > 0 {
		u := *k
		u.NumVLAN, u.VLAN = 0, [MaxVLAN]uint16{}
		t.tagged[u] = slotRef{fi, f.ID}
	}
	if t.opts.OnStart != nil {
		t.opts.OnStart(fi)
	}
	t.touch(fi, f, int(t.capture))
	return fi
}

func (t *Table) account(fi int32, p *pcapio.Packet, ts int64, wire int) {
	f := t.Flow(fi)
	f.Packets++
	f.Bytes += uint64(wire)
	f.active = t.clock
	if f.lastCap != t.capture {
		t.touch(fi, f, int(t.capture))
	}
	if p.Proto == pcapio.ProtoTCP || p.Proto == pcapio.ProtoUDP {
		f.PayloadBytes += uint64(p.PayloadLen)
	}
	if ts < f.First {
		f.First = ts
	}
	if ts > f.Last {
		f.Last = ts
	}
	if p.HasTCPHeader && p.Proto == pcapio.ProtoTCP && p.FragOffset == 0 {
		f.TCPFlags |= p.TCPFlags
		if !p.Fragment {
			t.trackSeq(fi, f, p)
		}
		if f.steady && p.TCPFlags&^(pcapio.TCPAck|pcapio.TCPPsh) == 0 && p.Window != 0 && p.TCPFlags&pcapio.TCPAck != 0 {
			return
		}
		t.tcpState(fi, f, p)
	} else if p.Proto == pcapio.ProtoUDP && p.PayloadLen > 0 && p.FragOffset == 0 && !f.steady {
		c := t.conn(f.conn)
		c.note(t.sideOf(c, fi), hData)
		f.steady = true
	}
}

// tcpState advances the connection's Zeek state for a segment of flow fi.
func (t *Table) tcpState(fi int32, f *Flow, p *pcapio.Packet) {
	c := t.conn(f.conn)
	side := t.sideOf(c, fi)
	wasClosed := c.closed()
	c.tcp(side, p)
	if c.ended && !f.ended {
		for _, o := range c.flows {
			if o >= 0 {
				t.Flow(o).ended = true
			}
		}
	}
	if !wasClosed && c.closed() && t.idle > 0 {
		t.deadline.push(deadline{at: t.clock + t.closeTO, conn: f.conn, serial: uint32(c.serial)}, byClose)
	}
	f.steady = c.state[side] == epEstablished && c.state[1-side] == epEstablished &&
		c.seen[side]&(hAck|hData) == hAck|hData
}

// expire ends the connections whose timeout has passed at t.clock.
func (t *Table) expire() {
	for t.deadline.due(t.clock) {
		d := t.deadline.pop()
		if !t.current(d) {
			continue // ended already
		}
		c := t.conn(d.conn)
		due := t.lastActive(c)
		if c.closed() {
			due += t.closeTO
		} else {
			due += t.idle
		}
		if due < t.clock {
			t.endConn(d.conn)
		} else {
			t.deadline.push(deadline{at: due, conn: d.conn, serial: uint32(c.serial)}, byOther)
		}
	}
	t.warmNext()
}

// warmAhead is how soon the deadline at the head of the queue must come
// for warmNext to read ahead for it: at 150 k packets a second (the 2 GB
// real capture), 1 ms is 150 packets, whose work leaves the lines in the
// core's 2 MB cache.
const warmAhead = int64(time.Millisecond)

// warmNext reads, one step per call (one a packet), the memory that
// ending the connection of the next deadline will read: its connection,
// then its flows' records, then their key index slots. Ending a
// connection read all of these cold, one dependent miss after another
// (the table's goroutine spent a third of its time in expire on the
// real capture). Here each read is independent of the packet's own, so
// the two overlap. It changes nothing but what is cached.
func (t *Table) warmNext() {
	if t.deadline.next >= t.clock+warmAhead || t.noWarm || t.deadline.len() == 0 {
		return
	}
	d := t.deadline.head()
	if d.conn != t.warmConn || d.serial != t.warmSerial {
		t.warm, t.warmConn, t.warmSerial = 0, d.conn, d.serial
	}
	// Each step reads only what the step before asked for, a packet
	// earlier, and asks for the next lines without waiting for them.
	c := t.conn(d.conn)
	switch t.warm {
	case 0:
		prefetch(uintptr(unsafe.Pointer(c)))
	case 1:
		if !t.current(*d) {
			break
		}
		for _, fi := range c.flows {
			if fi >= 0 {
				// The record's four cache lines: endConn copies it whole.
				p := uintptr(unsafe.Pointer(t.Flow(fi)))
				prefetch(p)
				prefetch(p + 64)
				prefetch(p + 128)
				prefetch(p + 192)
			}
		}
	case 2:
		if !t.current(*d) {
			break
		}
		mask := uint64(len(t.keys.slots) - 1)
		for _, fi := range c.flows {
			if fi >= 0 {
				prefetch(uintptr(unsafe.Pointer(&t.keys.slots[(hashKey(&t.Flow(fi).Key)>>32)&mask])))
			}
		}
	default:
		return
	}
	t.warm++
}

// lastActive is the clock at the connection's latest packet.
func (t *Table) lastActive(c *conn) int64 {
	var a int64 = -1 << 63
	for _, fi := range c.flows {
		if fi >= 0 {
			a = max(a, t.Flow(fi).active)
		}
	}
	return a
}

// finish completes a live flow's counters into out without changing the
// flow: holes still open count as missing, and the connection's Zeek
// state and history are filled in.
func (t *Table) finish(fi int32, out *Flow) {
	f := t.Flow(fi)
	*out = *f
	t.finishSeq(fi, out)
	if f.Key.Proto == pcapio.ProtoTCP {
		c := t.conn(f.conn)
		out.State = c.zeekState()
		out.History = c.zeekHistory()
	}
}

// Snapshot fills out with flow fi as it would be if its connection ended
// now; the flow goes on unchanged.
func (t *Table) Snapshot(fi int32, out *Flow) { t.finish(fi, out) }

// endConn ends a connection: its flows are finished, handed to OnEnd and
// their slots freed.
func (t *Table) endConn(ci int32) {
	c := t.conn(ci)
	ends := &t.ends
	n := 0
	for _, fi := range c.flows {
		if fi >= 0 {
			// Finished in place: the slot is freed after OnEnd.
			f := t.Flow(fi)
			t.finishSeq(fi, f)
			if f.Key.Proto == pcapio.ProtoTCP {
				f.State = c.zeekState()
				f.History = c.zeekHistory()
			}
			ends[n] = Ended{fi, f}
			n++
		}
	}
	if n == 2 && ends[1].Flow.ID < ends[0].Flow.ID {
		ends[0], ends[1] = ends[1], ends[0]
	}
	if t.opts.OnEnd != nil {
		t.opts.OnEnd(ends[:n])
	}
	for _, fi := range c.flows {
		if fi >= 0 {
			t.freeFlow(fi)
		}
	}
	*c = conn{}
	t.freeC = append(t.freeC, ci)
}

// freeFlow drops what refers to flow fi and makes its slot free.
func (t *Table) freeFlow(fi int32) {
	f := t.Flow(fi)
	t.del(fi)
	if k := f.Key; k.NumVLAN > 0 {
		k.NumVLAN, k.VLAN = 0, [MaxVLAN]uint16{}
		if ref, ok := t.tagged[k]; ok && ref.slot == fi {
			delete(t.tagged, k)
		}
	}
	if f.seq.hasSpans {
		delete(t.spans, fi)
	}
	*f = Flow{}
	t.freeF = append(t.freeF, fi)
	t.live--
}

// EndCapture places the fragments of capture ci still waiting for
// their datagram's first fragment in a flow with ports 0 (orphans).
// Holding them across captures would make the flows of an archive
// depend on where it was cut into index runs.
func (t *Table) EndCapture(ci int) {
	// Place orphans in capture order, so that IDs do not depend on map order.
	orphans := make([]fragKey, 0, len(t.held))
	for fk, hs := range t.held {
		if ci < 0 || int(hs[0].Capture) == ci {
			orphans = append(orphans, fk)
		}
	}
	slices.SortFunc(orphans, func(a, b fragKey) int {
		x, y := t.held[a][0], t.held[b][0]
		if x.Capture != y.Capture {
			return cmp.Compare(x.Capture, y.Capture)
		}
		return cmp.Compare(x.Index, y.Index)
	})
	for _, fk := range orphans {
		hs := t.held[fk]
		k := Key{Src: fk.src, Dst: fk.dst, Proto: fk.proto, IPVersion: fk.ver}
		if fk.vlan != 0 {
			k.VLAN[0], k.NumVLAN = fk.vlan, 1
		}
		fi := t.get(&k)
		if fi < 0 {
			var p pcapio.Packet
			fi = t.newFlow(&k, &p, hs[0].TS, -1)
		}
		t.stats.Orphans += uint64(len(hs))
		t.attach(fi, hs)
		delete(t.held, fk)
		t.nheld -= len(hs)
	}
}

// Finish ends every connection still live, in the order of their first
// flow's ID, after placing held fragments (EndCapture). Call it once,
// after the last packet of a scan.
func (t *Table) Finish() {
	t.EndCapture(-1)
	for _, ci := range t.liveConns() {
		t.endConn(ci)
	}
}

// liveConns lists the live connections in the order of their first
// flow's ID.
func (t *Table) liveConns() []int32 {
	type lc struct {
		id uint64
		ci int32
	}
	cs := make([]lc, 0, t.live) // a live connection has a live flow
	for ci := int32(0); ci < t.nconns; ci++ {
		c := t.conn(ci)
		if c.serial == 0 {
			continue
		}
		id := ^uint64(0)
		for _, fi := range c.flows {
			if fi >= 0 {
				id = min(id, t.Flow(fi).ID)
			}
		}
		cs = append(cs, lc{id, ci})
	}
	slices.SortFunc(cs, func(a, b lc) int { return cmp.Compare(a.id, b.id) })
	out := make([]int32, len(cs))
	for i, c := range cs {
		out[i] = c.ci
	}
	return out
}

// LiveFlows returns the slots of the live flows in ID order.
func (t *Table) LiveFlows() []int32 {
	// Sorted as (ID, slot) pairs: a comparison that read each flow's ID
	// through its slot missed the caches twice (0.14 s for the 290 k
	// flows live at the end of the 2 GB real capture).
	ls := make([]idSlot, 0, t.live)
	for ci := int32(0); ci < t.nconns; ci++ {
		c := t.conn(ci)
		if c.serial == 0 {
			continue
		}
		for _, fi := range c.flows {
			if fi >= 0 {
				ls = append(ls, idSlot{t.Flow(fi).ID, fi})
			}
		}
	}
	ls = sortIDSlots(ls)
	out := make([]int32, len(ls))
	for i, l := range ls {
		out[i] = l.fi
	}
	return out
}

// idSlot is a flow's ID and its slot.
type idSlot struct {
	id uint64
	fi int32
}

// sortIDSlots sorts ls by ID, which are distinct, and returns the sorted
// slice (ls or a slice of the same length): a radix sort, 11 bits of the
// IDs' span at a time. With slices.SortFunc, LiveFlows took 76 ms for
// the 276 k flows live at the end of the 2 GB real capture (in slot
// order, random in ID), on the commit's second core beside the
// compaction; with this, 40 ms (and 23 -> 17 ms for an add to its
// rotated archive, where restored flows come nearly in order).
func sortIDSlots(ls []idSlot) []idSlot {
	if len(ls) < 256 {
		slices.SortFunc(ls, func(a, b idSlot) int { return cmp.Compare(a.id, b.id) })
		return ls
	}
	lo, hi := ls[0].id, ls[0].id
	for _, l := range ls {
		lo, hi = min(lo, l.id), max(hi, l.id)
	}
	const bits = 11
	tmp := make([]idSlot, len(ls))
	for shift := uint(0); shift < 64 && (hi-lo)>>shift != 0; shift += bits {
		var count [1<<bits + 1]int
		for _, l := range ls {
			count[((l.id-lo)>>shift)&(1<<bits-1)+1]++
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for _, l := range ls {
			d := ((l.id - lo) >> shift) & (1<<bits - 1)
			tmp[count[d]] = l
			count[d]++
		}
		ls, tmp = tmp, ls
	}
	return ls
}
