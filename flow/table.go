package flow

import (
	"sort"
	"time"

	"github.com/pcapflow/pcapflow/pcapio"
)

// Options configure a Table.
type Options struct {
	// FirstID is the ID of the table's first flow (IDs continue across
	// the captures of one run or index). 0 means 1.
	FirstID uint64
	// Capture is stored in every flow of the table.
	Capture int
	// IdleTimeout, when positive, starts a new flow for a key whose
	// previous packet is older than this (capture time).
	IdleTimeout time.Duration
	// OnAttach is called for packets that were held back (fragments that
	// arrived before their datagram's first fragment) once the flow they
	// belong to is known. The counters of the flow already include them.
	OnAttach func(flow int32, h Held)
	// MaxHeld bounds held fragments; beyond it, an unplaceable fragment
	// goes straight to its portless flow. 0 means 65536.
	MaxHeld int
}

// Held is a packet the table held back until its flow was known.
type Held struct {
	Offset int64
	Length int32
	TS     int64
	wire   int32
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

type fragEntry struct {
	flow int32
	ts   int64
}

// Table tracks the flows of one capture. Memory grows with the number of
// flows (about 250 bytes each), never with the number of packets. It is
// not safe for concurrent use.
type Table struct {
	opts Options
	keys keyIndex // current flow of each key
	// tagged holds flows with VLAN tags under their key without tags, so
	// that a direction tagged on the wire finds its untagged reverse (SPAN
	// ports often see one direction of a routed conversation tagged).
	tagged  map[Key]int32
	chunks  [][]Flow // flows in creation order, in fixed-size chunks so pointers stay valid
	n       int32
	conns   [][]conn // connections, chunked like the flows: growing never copies them
	nconns  int32
	frags   map[fragKey]fragEntry
	held    map[fragKey][]Held
	nheld   int
	sweepAt int64
	stats   Stats
	spans   map[int32][]span // out-of-order ranges seen, for flows with holes
	ctx     *tunnelCtx       // set during AddInner
	tunnels map[tunnelEnds]uint32
}

// NewTable returns an empty table.
func NewTable(opts Options) *Table {
	if opts.FirstID == 0 {
		opts.FirstID = 1
	}
	if opts.MaxHeld == 0 {
		opts.MaxHeld = 65536
	}
	t := &Table{
		opts:   opts,
		tagged: make(map[Key]int32),
		frags:  make(map[fragKey]fragEntry),
		held:   make(map[fragKey][]Held),
	}
	t.keys.init()
	return t
}

// Len is the number of flows.
func (t *Table) Len() int { return int(t.n) }

// Flow returns flow i (0-based, in ID order). The pointer stays valid.
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

// addConn stores c and returns its index.
func (t *Table) addConn(c conn) int32 {
	ci := t.nconns
	t.conns = withRoom(t.conns, ci)
	t.nconns++
	*t.conn(ci) = c
	return ci
}

// Stats reports what the table has seen.
func (t *Table) Stats() Stats { return t.stats }

// NextID is the ID the next new flow would get.
func (t *Table) NextID() uint64 { return t.opts.FirstID + uint64(t.n) }

// Add accounts one packet and returns the index of its flow, or -1 when
// the packet belongs to no flow (not IP) or is held back until its flow
// is known (see Options.OnAttach).
func (t *Table) Add(rec *pcapio.Record, p *pcapio.Packet) int32 {
	t.stats.Packets++
	if p.IPVersion == 0 {
		t.stats.Problems[p.Problem]++
		return -1
	}
	ts := rec.Timestamp
	if p.Fragment {
		fk := fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto, ver: p.IPVersion}
		if p.NumVLAN > 0 {
			fk.vlan = p.VLAN[0]
		}
		if p.FragOffset != 0 {
			e, ok := t.frags[fk]
			if !ok {
				if t.nheld < t.opts.MaxHeld {
					t.held[fk] = append(t.held[fk], Held{rec.Offset, int32(rec.Length), ts, int32(rec.OrigLen)})
					t.nheld++
					t.stats.Held++
					return -1
				}
				t.stats.Orphans++
				k := t.keyOf(p)
				k.SrcPort, k.DstPort = 0, 0
				fi := t.lookup(k, p, ts)
				t.account(fi, p, ts, rec.OrigLen)
				return fi
			}
			e.ts = ts
			t.frags[fk] = e
			t.account(e.flow, p, ts, rec.OrigLen)
			return e.flow
		}
		fi := t.lookup(t.keyOf(p), p, ts)
		t.account(fi, p, ts, rec.OrigLen)
		t.frags[fk] = fragEntry{fi, ts}
		if hs, ok := t.held[fk]; ok {
			delete(t.held, fk)
			t.nheld -= len(hs)
			t.attach(fi, hs)
		}
		t.sweepFrags(ts)
		return fi
	}
	fi := t.lookup(t.keyOf(p), p, ts)
	t.account(fi, p, ts, rec.OrigLen)
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
	ctx := tunnelCtx{typ: outerPkt.Tunnel, id: id, conn: t.endpoints(&of.Key), outer: outer, depth: of.Depth + 1}
	t.ctx = &ctx
	defer func() { t.ctx = nil }()
	return t.Add(rec, inner)
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
	outer int32
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
		if t.opts.OnAttach != nil {
			t.opts.OnAttach(fi, h)
		}
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
		if now-e.ts > 60e9 {
			delete(t.frags, k)
		}
	}
}

// lookup finds or creates the current flow for k.
func (t *Table) lookup(k Key, p *pcapio.Packet, ts int64) int32 {
	fi := t.get(&k)
	ok := fi >= 0
	if ok {
		f := t.Flow(fi)
		switch {
		case t.opts.IdleTimeout > 0 && ts-f.Last > int64(t.opts.IdleTimeout):
			ok = false
		case k.Proto == pcapio.ProtoTCP && f.ended:
			c := t.conn(f.conn)
			side := t.sideOf(c, fi)
			if p.TCPFlags&(pcapio.TCPSyn|pcapio.TCPAck) == pcapio.TCPSyn && !(c.hasBase[side] && c.base[side] == p.Seq) {
				// Port reuse: a new connection on an ended one's key. A SYN
				// with the old connection's initial sequence number is a
				// late retransmission and stays in it.
				ok = false
			} else if ri, rok := t.reverse(k); rok && t.Flow(ri).conn != t.Flow(fi).conn && t.Flow(ri).conn > t.Flow(fi).conn {
				// The other direction already started a newer connection
				// (its SYN came first); this packet belongs to that one.
				return t.newFlow(k, p, ts, t.Flow(ri).conn)
			}
		}
		if ok {
			return fi
		}
	}
	ci := int32(-1)
	if ri, rok := t.reverse(k); rok {
		rc := t.conn(t.Flow(ri).conn)
		side := 1 - t.sideOf(rc, ri)
		if rc.flows[side] < 0 && !(k.Proto == pcapio.ProtoTCP && rc.ended && p.TCPFlags&(pcapio.TCPSyn|pcapio.TCPAck) == pcapio.TCPSyn) &&
			!(t.opts.IdleTimeout > 0 && ts-t.Flow(ri).Last > int64(t.opts.IdleTimeout)) {
			ci = t.Flow(ri).conn
		}
	}
	return t.newFlow(k, p, ts, ci)
}

// reverse finds the current flow of the opposite direction: the exact
// reverse key, else the same reverse key with or without VLAN tags.
func (t *Table) reverse(k Key) (int32, bool) {
	r := k.Reverse()
	if fi := t.get(&r); fi >= 0 {
		return fi, true
	}
	if r.NumVLAN > 0 {
		r.NumVLAN, r.VLAN = 0, [MaxVLAN]uint16{}
		if fi := t.get(&r); fi >= 0 {
			return fi, true
		}
	}
	fi, ok := t.tagged[r]
	return fi, ok
}

func (t *Table) sideOf(c *conn, fi int32) int {
	if c.flows[0] == fi {
		return 0
	}
	return 1
}

// newFlow creates a flow for k, joining connection ci (or a new one).
func (t *Table) newFlow(k Key, p *pcapio.Packet, ts int64, ci int32) int32 {
	fi := t.n
	t.chunks = withRoom(t.chunks, fi)
	t.n++
	f := t.Flow(fi)
	*f = Flow{ID: t.opts.FirstID + uint64(fi), Key: k, Capture: t.opts.Capture, First: ts, Last: ts,
		SrcMAC: p.SrcMAC, DstMAC: p.DstMAC, HasSrcMAC: p.HasSrcMAC, HasDstMAC: p.HasDstMAC, outer: -1}
	if c := t.ctx; c != nil {
		f.outer, f.Depth = c.outer, c.depth
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
		if c.flows[0] < 0 {
			c.flows[0] = fi
		} else {
			c.flows[1] = fi
		}
	}
	f.conn = ci
	t.put(fi)
	if k.NumVLAN > 0 {
		u := k
		u.NumVLAN, u.VLAN = 0, [MaxVLAN]uint16{}
		t.tagged[u] = fi
	}
	return fi
}

func (t *Table) account(fi int32, p *pcapio.Packet, ts int64, wire int) {
	f := t.Flow(fi)
	f.Packets++
	f.Bytes += uint64(wire)
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
		c := t.conn(f.conn)
		side := t.sideOf(c, fi)
		c.tcp(side, p)
		if c.ended && !f.ended {
			for _, o := range c.flows {
				if o >= 0 {
					t.Flow(o).ended = true
				}
			}
		}
		f.steady = c.state[side] == epEstablished && c.state[1-side] == epEstablished &&
			c.seen[side]&(hAck|hData) == hAck|hData
	} else if p.Proto == pcapio.ProtoUDP && p.PayloadLen > 0 && p.FragOffset == 0 && !f.steady {
		c := t.conn(f.conn)
		c.note(t.sideOf(c, fi), hData)
		f.steady = true
	}
}

// Finish places fragments whose first fragment never came (in a flow
// with ports 0) and fills in peers, Zeek state and history, and Community
// IDs. Call it once, after the last Add.
func (t *Table) Finish() {
	// Place orphans in file order, so that IDs do not depend on map order.
	orphans := make([]fragKey, 0, len(t.held))
	for fk := range t.held {
		orphans = append(orphans, fk)
	}
	sort.Slice(orphans, func(i, j int) bool { return t.held[orphans[i]][0].Offset < t.held[orphans[j]][0].Offset })
	for _, fk := range orphans {
		hs := t.held[fk]
		k := Key{Src: fk.src, Dst: fk.dst, Proto: fk.proto, IPVersion: fk.ver}
		if fk.vlan != 0 {
			k.VLAN[0], k.NumVLAN = fk.vlan, 1
		}
		fi := t.get(&k)
		if fi < 0 {
			var p pcapio.Packet
			fi = t.newFlow(k, &p, hs[0].TS, -1)
		}
		t.stats.Orphans += uint64(len(hs))
		t.attach(fi, hs)
	}
	clear(t.held)
	t.nheld = 0
	for i := int32(0); i < t.n; i++ {
		f := t.Flow(i)
		t.finishSeq(i, f)
		if f.outer >= 0 {
			f.Outer = t.Flow(f.outer).ID
		}
		c := t.conn(t.Flow(i).conn)
		if o := c.flows[1-t.sideOf(c, i)]; o >= 0 {
			f.Peer = t.Flow(o).ID
		}
		if f.Key.Proto == pcapio.ProtoTCP {
			f.State = c.zeekState()
			f.History = c.zeekHistory()
		}
	}
}
