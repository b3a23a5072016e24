package index

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/internal/varint"
	"github.com/pcapflow/pcapflow/pcapio"
)

// A block of flow records on disk (F and G values, and a flow stored
// alone, L and N) is column-wise: the flows of a block started close
// together and share addresses, MACs, ports and time scales, and the
// second direction of a conversation repeats the first; dictionaries,
// "same as before" flags and deltas turn each record into about ten
// bytes before compression.
//
//	uvarint(present)          bit i: ID first+i is in the block
//	varint(base time) uvarint(base capture) uvarint(time unit, ns)
//	uvarint(#flag words) uvarint*                 the block's distinct flags
//	uvarint(#addresses) (u8 length 4 or 16, address)*
//	uvarint(#MACs) 6 bytes*
//	uvarint(#ports) u16*
//	uvarint(length of each column), then the columns; a column is the
//	sequence of its values for the flows (in ID order) that have one:
//	  flags    uvarint index of the flow's flag word
//	  capture  varint(capture - base capture)                   bCapture
//	  peer     varint(peer - ID)                                 bPeer and not bPeerLater
//	  key      [u8 protocol, unless bTCP] [uvarint address indexes, unless
//	           bAddrSame] ports (uvarint dictionary index with bSportDict,
//	           bDportDict; the source port as varint(step) with bSportNear;
//	           else u16), uvarint VLAN IDs, [u8 type, uvarint
//	           ID, uvarint endpoints]                            unless mirrored
//	  outer    varint(outer - ID), u8 depth                      bTunnel
//	  MACs     uvarint indexes                                   unless mirrored or bMACSame
//	  counts   uvarint packets, bytes; [varint(bytes - payload - packets*header)]
//
// where header is per (IP version, protocol) of the block: a column of
// uvarint(#kinds) (u8 version, u8 protocol, uvarint header)* after the
// ports.
//
//	times    varint((first - previous first) / unit), uvarint((last - first) / unit);
//	         with bTimesPeer: varint((first - peer's first) / unit), varint((last - peer's last) / unit)
//	TCP      u8 state, uvarint length, letters                 a history not in historyTable
//	sequence uvarint missing, retrans, overlap bytes           bSeq
//
// "Mirrored" (bMirror) means the peer is earlier in the block and this
// flow is its reverse: key reversed, MACs swapped, the same state and
// history; bKeyRev, only the key reversed. A flow mirrored by a later one
// does not store its peer (bPeerLater): the later one names it. The
// previous first of the first flow is the base time; the time unit is the
// greatest common divisor of every time step of the block (1000 for
// microsecond captures). header is the block's usual frame overhead per
// packet (Ethernet, IP, TCP or UDP headers and options) of flows of its
// protocol and IP version, so that the payload difference is mostly 0.
// A TCP flow's flags and, unless mirrored, the code of its state and
// history (historyTable) are in its flag word.
const (
	bPeer = 1 << iota
	bMirror
	bIPv6
	bSrcMAC
	bDstMAC
	bTCP
	bSeq
	_ // bits 7-9: the VLAN count (bVLANShift)
	_
	_
	bTunnel
	bCapture
	bKeyRev
	bAddrSame
	bMACSame
	bSportDict
	bDportDict
	bPeerLater
	bTimesPeer
	bNoPayload
)

// Fields of the flag word wider than a bit.
const (
	bVLANShift = 7  // 3 bits: VLAN count
	bTCPShift  = 20 // 8 bits: the TCP flags
	bHistShift = 28 // 7 bits: the history code; 0x7f: given in the TCP column
	bHistOwn   = 0x7f
)

// bSportNear: the source port is stored as varint(port - the port of the
// last flow of the block with the same addresses whose key was stored),
// a step of -64..63. Clients take ephemeral ports in sequence (Linux per
// destination, Windows globally), so a client's next connection to a
// server is a step of a few ports from its last: a byte where the port
// took two that zstd could not shrink.
const bSportNear = 1 << 35

// nearPort finds the source port bSportNear steps from: that of the last
// of keyed (the flows of the block whose key was stored, in ID order)
// with k's IP version and addresses.
func nearPort(keyed []*flow.Flow, k *flow.Key) (uint16, bool) {
	for i := len(keyed) - 1; i >= 0; i-- {
		if q := &keyed[i].Key; q.IPVersion == k.IPVersion && q.Src == k.Src && q.Dst == k.Dst {
			return q.SrcPort, true
		}
	}
	return 0, false
}

// Columns of a record block.
const (
	cFlags = iota
	cCapture
	cPeer
	cKey
	cOuter
	cMAC
	cCounts
	cTimes
	cTCP
	cSeq
	numCols
)

// appendRecordBlock encodes flows (of IDs first..first+63, ascending).
func appendRecordBlock(dst []byte, first uint64, flows []*flow.Flow) []byte {
	return new(blockScratch).appendRecordBlock(dst, first, flows)
}

// blockScratch is the space a record block's columns and dictionaries
// are built in. A writer keeps one, so that each block reuses the space
// of the blocks before it: built anew, growing ten columns from nothing
// took 0.08 s of the sink's goroutine on the 2 GB real capture.
type blockScratch struct {
	cols  [numCols][]byte
	addrs [][]byte
	macs  [][6]byte
	words []uint64
	ports []uint16
}

// appendRecordBlock is the package's appendRecordBlock, in sc's space.
func (sc *blockScratch) appendRecordBlock(dst []byte, first uint64, flows []*flow.Flow) []byte {
	var present uint64
	var pos [flowBlock]int // index in flows by ID - first, -1 for none
	for i := range pos {
		pos[i] = -1
	}
	for i, f := range flows {
		present |= 1 << (f.ID - first)
		pos[f.ID-first] = i
	}
	dst = binary.AppendUvarint(dst, present)
	if len(flows) == 0 {
		return dst
	}
	inBlock := func(id uint64) *flow.Flow {
		if id < first || id-first >= flowBlock || pos[id-first] < 0 {
			return nil
		}
		return flows[pos[id-first]]
	}
	base := blockBase{flows[0].First, flows[0].Capture}
	// Which flows mirror an earlier one (their peer, reversed), and which
	// are mirrored by a later one.
	var mirror, keyRev, later [flowBlock]bool
	for _, f := range flows {
		if f.Peer != 0 && f.Peer < f.ID {
			if p := inBlock(f.Peer); p != nil && p.Peer == f.ID {
				i := f.ID - first
				mirror[i] = mirrors(f, p)
				keyRev[i] = !mirror[i] && f.Key.IsReverseOf(&p.Key)
				later[p.ID-first] = mirror[i] || keyRev[i]
			}
		}
	}
	// The time unit: the GCD of every stored time step.
	unit := uint64(0)
	prev := base.time
	for _, f := range flows {
		i := f.ID - first
		if mirror[i] || keyRev[i] {
			p := inBlock(f.Peer)
			unit = gcd(gcd(unit, absDiff(f.First, p.First)), absDiff(f.Last, p.Last))
		} else {
			unit = gcd(gcd(unit, absDiff(f.First, prev)), uint64(f.Last-f.First))
			prev = f.First
		}
	}
	if unit == 0 {
		unit = 1
	}
	// Dictionaries: addresses, MACs, and the ports used more than once.
	addrs, macs := sc.addrs[:0], sc.macs[:0]
	addrIdx := func(a []byte) uint64 {
		for i, x := range addrs {
			if string(x) == string(a) {
				return uint64(i)
			}
		}
		addrs = append(addrs, a)
		return uint64(len(addrs) - 1)
	}
	macIdx := func(m [6]byte) uint64 {
		for i, x := range macs {
			if x == m {
				return uint64(i)
			}
		}
		macs = append(macs, m)
		return uint64(len(macs) - 1)
	}
	var seenPorts [2 * flowBlock]uint16
	all := seenPorts[:0]
	for _, f := range flows {
		if i := f.ID - first; !mirror[i] && !keyRev[i] {
			all = append(all, f.Key.SrcPort, f.Key.DstPort)
		}
	}
	slices.Sort(all)
	ports := sc.ports[:0]
	for j := 1; j < len(all); j++ {
		if all[j] == all[j-1] && (len(ports) == 0 || ports[len(ports)-1] != all[j]) {
			ports = append(ports, all[j])
		}
	}
	headers := blockHeaders(flows)
	words := sc.words[:0]
	cols := &sc.cols
	for i := range cols {
		cols[i] = cols[i][:0]
	}
	prev = base.time
	var lastKey *flow.Flow // the previous flow whose key was stored
	var lastMAC *flow.Flow // the previous flow whose MACs were stored
	var keyedBuf [flowBlock]*flow.Flow
	keyedFlows := keyedBuf[:0] // the flows whose key was stored
	for _, f := range flows {
		i := f.ID - first
		k := &f.Key
		fl := uint64(k.NumVLAN) << bVLANShift
		set := func(bit uint64, on bool) {
			if on {
				fl |= bit
			}
		}
		set(bPeer, f.Peer != 0)
		set(bMirror, mirror[i])
		set(bKeyRev, keyRev[i])
		set(bPeerLater, later[i])
		set(bIPv6, k.IPVersion == 6)
		set(bSrcMAC, f.HasSrcMAC)
		set(bDstMAC, f.HasDstMAC)
		tcp := k.Proto == pcapio.ProtoTCP
		set(bTCP, tcp)
		set(bSeq, tcp && f.MissingBytes|f.RetransBytes|f.OverlapBytes != 0)
		set(bTunnel, k.TunnelType != 0)
		set(bCapture, f.Capture != base.capture)
		set(bTimesPeer, mirror[i] || keyRev[i])
		set(bNoPayload, f.PayloadBytes == 0)
		ownHistory := false
		if tcp {
			fl |= uint64(f.TCPFlags) << bTCPShift
			if !mirror[i] {
				code, ok := historyCode[historyKey{f.State, f.History}]
				if !ok {
					code, ownHistory = bHistOwn, true
				}
				fl |= uint64(code) << bHistShift
			}
		}
		keyed := !mirror[i] && !keyRev[i]
		var step int64 // the source port's, with bSportNear
		if keyed {
			set(bAddrSame, lastKey != nil && lastKey.Key.IPVersion == k.IPVersion && lastKey.Key.Src == k.Src && lastKey.Key.Dst == k.Dst)
			_, sd := slices.BinarySearch(ports, k.SrcPort)
			_, dd := slices.BinarySearch(ports, k.DstPort)
			set(bSportDict, sd)
			set(bDportDict, dd)
			if p, ok := nearPort(keyedFlows, k); ok && !sd {
				step = int64(k.SrcPort) - int64(p)
				set(bSportNear, step >= -64 && step < 64)
			}
		}
		if !mirror[i] && (f.HasSrcMAC || f.HasDstMAC) {
			set(bMACSame, lastMAC != nil && lastMAC.HasSrcMAC == f.HasSrcMAC && lastMAC.HasDstMAC == f.HasDstMAC &&
				lastMAC.SrcMAC == f.SrcMAC && lastMAC.DstMAC == f.DstMAC)
		}
		w := slices.Index(words, fl)
		if w < 0 {
			words = append(words, fl)
			w = len(words) - 1
		}
		cols[cFlags] = binary.AppendUvarint(cols[cFlags], uint64(w))
		if fl&bCapture != 0 {
			cols[cCapture] = binary.AppendVarint(cols[cCapture], int64(f.Capture-base.capture))
		}
		if f.Peer != 0 && !later[i] {
			cols[cPeer] = binary.AppendVarint(cols[cPeer], int64(f.Peer-f.ID))
		}
		if keyed {
			c := cols[cKey]
			if !tcp {
				c = append(c, k.Proto)
			}
			if fl&bAddrSame == 0 {
				alen := 4
				if k.IPVersion == 6 {
					alen = 16
				}
				c = binary.AppendUvarint(c, addrIdx(k.Src[:alen]))
				c = binary.AppendUvarint(c, addrIdx(k.Dst[:alen]))
			}
			for pi, p := range [2]struct {
				port uint16
				dict bool
			}{{k.SrcPort, fl&bSportDict != 0}, {k.DstPort, fl&bDportDict != 0}} {
				if pi == 0 && fl&bSportNear != 0 {
					c = binary.AppendVarint(c, step)
					continue
				}
				if p.dict {
					j, _ := slices.BinarySearch(ports, p.port)
					c = binary.AppendUvarint(c, uint64(j))
				} else {
					c = binary.BigEndian.AppendUint16(c, p.port)
				}
			}
			cols[cKey] = appendKeyContext(c, k)
			lastKey = f
			keyedFlows = append(keyedFlows, f)
		}
		if k.TunnelType != 0 {
			cols[cOuter] = binary.AppendVarint(cols[cOuter], int64(f.Outer-f.ID))
			cols[cOuter] = append(cols[cOuter], f.Depth)
		}
		if !mirror[i] && (f.HasSrcMAC || f.HasDstMAC) {
			if fl&bMACSame == 0 {
				if f.HasSrcMAC {
					cols[cMAC] = binary.AppendUvarint(cols[cMAC], macIdx(f.SrcMAC))
				}
				if f.HasDstMAC {
					cols[cMAC] = binary.AppendUvarint(cols[cMAC], macIdx(f.DstMAC))
				}
			}
			lastMAC = f
		}
		c := cols[cCounts]
		c = binary.AppendUvarint(c, f.Packets)
		c = binary.AppendUvarint(c, f.Bytes)
		if fl&bNoPayload == 0 {
			c = binary.AppendVarint(c, int64(f.Bytes)-int64(f.PayloadBytes)-int64(f.Packets)*headers.of(k))
		}
		cols[cCounts] = c
		if fl&bTimesPeer != 0 {
			p := inBlock(f.Peer)
			cols[cTimes] = binary.AppendVarint(cols[cTimes], (f.First-p.First)/int64(unit))
			cols[cTimes] = binary.AppendVarint(cols[cTimes], (f.Last-p.Last)/int64(unit))
		} else {
			cols[cTimes] = binary.AppendVarint(cols[cTimes], (f.First-prev)/int64(unit))
			cols[cTimes] = binary.AppendUvarint(cols[cTimes], uint64(f.Last-f.First)/unit)
			prev = f.First
		}
		if tcp {
			if ownHistory {
				cols[cTCP] = append(cols[cTCP], byte(f.State))
				cols[cTCP] = binary.AppendUvarint(cols[cTCP], uint64(f.History.Len()))
				cols[cTCP] = f.History.Append(cols[cTCP])
			}
			if fl&bSeq != 0 {
				cols[cSeq] = binary.AppendUvarint(cols[cSeq], f.MissingBytes)
				cols[cSeq] = binary.AppendUvarint(cols[cSeq], f.RetransBytes)
				cols[cSeq] = binary.AppendUvarint(cols[cSeq], f.OverlapBytes)
			}
		}
	}
	dst = binary.AppendVarint(dst, base.time)
	dst = binary.AppendUvarint(dst, uint64(base.capture))
	dst = binary.AppendUvarint(dst, unit)
	dst = binary.AppendUvarint(dst, uint64(len(words)))
	for _, w := range words {
		dst = binary.AppendUvarint(dst, w)
	}
	dst = binary.AppendUvarint(dst, uint64(len(addrs)))
	for _, a := range addrs {
		dst = append(dst, byte(len(a)))
		dst = append(dst, a...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(macs)))
	for _, m := range macs {
		dst = append(dst, m[:]...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(ports)))
	for _, p := range ports {
		dst = binary.BigEndian.AppendUint16(dst, p)
	}
	dst = headers.append(dst)
	for _, c := range cols {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
	}
	for _, c := range cols {
		dst = append(dst, c...)
	}
	clear(addrs) // they point into the flows' keys: hold none of them
	sc.addrs, sc.macs, sc.words, sc.ports = addrs[:0], macs[:0], words[:0], ports[:0]
	return dst
}

// headerTable is a block's usual frame overhead per packet, by IP
// version and protocol.
type headerTable []struct {
	ver, proto uint8
	h          int64
}

func (t headerTable) of(k *flow.Key) int64 {
	for _, e := range t {
		if e.ver == k.IPVersion && e.proto == k.Proto {
			return e.h
		}
	}
	return 0
}

func (t headerTable) append(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(t)))
	for _, e := range t {
		dst = append(dst, e.ver, e.proto)
		dst = binary.AppendUvarint(dst, uint64(e.h))
	}
	return dst
}

// blockHeaders finds the most common overhead per packet of each kind of
// flow with payload.
func blockHeaders(flows []*flow.Flow) headerTable {
	type obs struct {
		ver, proto uint8
		h          int64
	}
	var buf [flowBlock]obs
	os := buf[:0]
	for _, f := range flows {
		if f.PayloadBytes == 0 || f.Packets == 0 || f.Bytes < f.PayloadBytes {
			continue
		}
		os = append(os, obs{f.Key.IPVersion, f.Key.Proto, int64(f.Bytes-f.PayloadBytes) / int64(f.Packets)})
	}
	slices.SortFunc(os, func(a, b obs) int {
		if a.ver != b.ver {
			return int(a.ver) - int(b.ver)
		}
		if a.proto != b.proto {
			return int(a.proto) - int(b.proto)
		}
		return cmp.Compare(a.h, b.h)
	})
	var t headerTable
	for i := 0; i < len(os); {
		j, best, n := i, os[i].h, 0
		for j < len(os) && os[j].ver == os[i].ver && os[j].proto == os[i].proto {
			k := j
			for k < len(os) && os[k] == os[j] {
				k++
			}
			if k-j > n {
				best, n = os[j].h, k-j
			}
			j = k
		}
		t = append(t, struct {
			ver, proto uint8
			h          int64
		}{os[i].ver, os[i].proto, best})
		i = j
	}
	return t
}

func absDiff(a, b int64) uint64 {
	if a > b {
		return uint64(a - b)
	}
	return uint64(b - a)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// colReader reads one column; a value read past its end marks it Bad.
type colReader struct{ varint.Reader }

func (c *colReader) uvarint() uint64    { return c.Uvarint() }
func (c *colReader) varint() int64      { return c.Varint() }
func (c *colReader) byte() byte         { return c.Byte() }
func (c *colReader) bytes(n int) []byte { return c.Bytes(n) }

// recordBlock is a decoded block of records.
type recordBlock struct {
	first   uint64
	present uint64
	flows   [flowBlock]flow.Flow // by ID - first
}

// has reports whether the block holds flow id.
func (rb *recordBlock) has(id uint64) bool {
	return id >= rb.first && id-rb.first < flowBlock && rb.present&(1<<(id-rb.first)) != 0
}

// decodeRecordBlock decodes a block of records whose first ID is first.
func decodeRecordBlock(b []byte, first uint64, rb *recordBlock) error {
	// Made only when needed: formatting it on every call was 50 ms of
	// adding a file to the 2 GB capture's index, which decodes every
	// restored block (so too decodeTailBlock's and decodeIDs').
	bad := func() error { return fmt.Errorf("%w: record block %d", errCorrupt, first) }
	h := colReader{varint.Reader{B: b}}
	rb.first = first
	rb.present = h.uvarint()
	if rb.present == 0 {
		if h.Bad {
			return bad()
		}
		return nil
	}
	base := blockBase{time: h.varint(), capture: int(h.uvarint())}
	unit := h.uvarint()
	nw := h.uvarint()
	if h.Bad || unit == 0 || nw > uint64(len(h.B)) || base.capture < 0 {
		return bad()
	}
	words := make([]uint64, nw)
	for i := range words {
		words[i] = h.uvarint()
	}
	na := h.uvarint()
	if na > uint64(len(h.B)/5) {
		return bad()
	}
	addrs := make([][]byte, na)
	for i := range addrs {
		n := int(h.byte())
		if n != 4 && n != 16 {
			return bad()
		}
		addrs[i] = h.bytes(n)
	}
	nm := h.uvarint()
	if nm > uint64(len(h.B)/6) {
		return bad()
	}
	macs := make([][6]byte, nm)
	for i := range macs {
		copy(macs[i][:], h.bytes(6))
	}
	np := h.uvarint()
	if np > uint64(len(h.B)/2) {
		return bad()
	}
	ports := make([]uint16, np)
	for i := range ports {
		ports[i] = binary.BigEndian.Uint16(h.bytes(2))
	}
	nh := h.uvarint()
	if nh > uint64(len(h.B)/3) {
		return bad()
	}
	headers := make(headerTable, nh)
	for i := range headers {
		headers[i].ver, headers[i].proto = h.byte(), h.byte()
		headers[i].h = int64(h.uvarint())
	}
	var cols [numCols]colReader
	var lens [numCols]uint64
	for i := range lens {
		lens[i] = h.uvarint()
	}
	for i := range cols {
		if lens[i] > uint64(len(h.B)) {
			return bad()
		}
		cols[i].B = h.bytes(int(lens[i]))
	}
	if h.Bad {
		return bad()
	}
	addr := func(c *colReader, dst *[16]byte, alen int) {
		i := c.uvarint()
		if i >= uint64(len(addrs)) || len(addrs[i]) != alen {
			c.Fail()
			return
		}
		copy(dst[:], addrs[i])
	}
	port := func(c *colReader, dict bool) uint16 {
		if !dict {
			return binary.BigEndian.Uint16(c.bytes(2))
		}
		i := c.uvarint()
		if i >= uint64(len(ports)) {
			c.Fail()
			return 0
		}
		return ports[i]
	}
	mac := func(c *colReader, dst *[6]byte) {
		i := c.uvarint()
		if i >= uint64(len(macs)) {
			c.Fail()
			return
		}
		*dst = macs[i]
	}
	prev := base.time
	var lastKey, lastMAC *flow.Flow
	var keyedBuf [flowBlock]*flow.Flow
	keyedFlows := keyedBuf[:0]
	var flags [flowBlock]uint64
	for i := uint64(0); i < flowBlock; i++ {
		if rb.present&(1<<i) == 0 {
			continue
		}
		f := &rb.flows[i]
		*f = flow.Flow{ID: first + i, Capture: base.capture}
		w := cols[cFlags].uvarint()
		if w >= uint64(len(words)) {
			return bad()
		}
		fl := words[w]
		flags[i] = fl
		if fl&bCapture != 0 {
			f.Capture += int(cols[cCapture].varint())
			if f.Capture < 0 {
				return bad()
			}
		}
		if fl&bPeer != 0 && fl&bPeerLater == 0 {
			f.Peer = uint64(int64(f.ID) + cols[cPeer].varint())
		}
		var p *flow.Flow
		if fl&(bMirror|bKeyRev|bTimesPeer) != 0 {
			if f.Peer < first || f.Peer >= f.ID || rb.present&(1<<(f.Peer-first)) == 0 {
				return bad()
			}
			p = &rb.flows[f.Peer-first]
			p.Peer = f.ID // what bPeerLater left out
		}
		k := &f.Key
		tcp := fl&bTCP != 0
		if fl&(bMirror|bKeyRev) != 0 {
			k.SetReverse(&p.Key)
		} else {
			c := &cols[cKey]
			k.Proto = pcapio.ProtoTCP
			if !tcp {
				k.Proto = c.byte()
			}
			k.IPVersion = 4
			alen := 4
			if fl&bIPv6 != 0 {
				k.IPVersion, alen = 6, 16
			}
			if fl&bAddrSame != 0 {
				if lastKey == nil || lastKey.Key.IPVersion != k.IPVersion {
					return bad()
				}
				k.Src, k.Dst = lastKey.Key.Src, lastKey.Key.Dst
			} else {
				addr(c, &k.Src, alen)
				addr(c, &k.Dst, alen)
			}
			if fl&bSportNear != 0 {
				near, ok := nearPort(keyedFlows, k)
				sp := int64(near) + c.varint()
				if !ok || sp < 0 || sp > 0xffff {
					return bad()
				}
				k.SrcPort = uint16(sp)
			} else {
				k.SrcPort = port(c, fl&bSportDict != 0)
			}
			k.DstPort = port(c, fl&bDportDict != 0)
			k.NumVLAN = uint8(fl >> bVLANShift & 7)
			if k.NumVLAN > flow.MaxVLAN {
				return bad()
			}
			for j := 0; j < int(k.NumVLAN); j++ {
				k.VLAN[j] = uint16(c.uvarint())
			}
			if fl&bTunnel != 0 {
				k.TunnelType = pcapio.TunnelType(c.byte())
				k.TunnelID = uint32(c.uvarint())
				k.Tunnel = uint32(c.uvarint())
			}
			lastKey = f
			keyedFlows = append(keyedFlows, f)
		}
		if fl&bTunnel != 0 {
			f.Outer = uint64(int64(f.ID) + cols[cOuter].varint())
			f.Depth = cols[cOuter].byte()
		}
		f.HasSrcMAC, f.HasDstMAC = fl&bSrcMAC != 0, fl&bDstMAC != 0
		switch {
		case fl&bMirror != 0:
			f.SrcMAC, f.DstMAC = p.DstMAC, p.SrcMAC
		case !f.HasSrcMAC && !f.HasDstMAC:
		case fl&bMACSame != 0:
			if lastMAC == nil {
				return bad()
			}
			f.SrcMAC, f.DstMAC = lastMAC.SrcMAC, lastMAC.DstMAC
			lastMAC = f
		default:
			if f.HasSrcMAC {
				mac(&cols[cMAC], &f.SrcMAC)
			}
			if f.HasDstMAC {
				mac(&cols[cMAC], &f.DstMAC)
			}
			lastMAC = f
		}
		c := &cols[cCounts]
		f.Packets, f.Bytes = c.uvarint(), c.uvarint()
		if fl&bNoPayload == 0 {
			f.PayloadBytes = uint64(int64(f.Bytes) - int64(f.Packets)*headers.of(k) - c.varint())
		}
		t := &cols[cTimes]
		if fl&bTimesPeer != 0 {
			f.First = p.First + t.varint()*int64(unit)
			f.Last = p.Last + t.varint()*int64(unit)
		} else {
			f.First = prev + t.varint()*int64(unit)
			f.Last = f.First + int64(t.uvarint()*unit)
			prev = f.First
		}
		if tcp {
			f.TCPFlags = uint8(fl >> bTCPShift)
			if fl&bMirror != 0 {
				f.State, f.History = p.State, p.History
			} else if code := fl >> bHistShift & 0x7f; code != bHistOwn {
				if int(code) >= len(historyTable) {
					return bad()
				}
				f.State, f.History = historyTable[code].state, flow.MakeHistory(historyTable[code].history)
			} else {
				c := &cols[cTCP]
				f.State = flow.State(c.byte())
				hl := c.uvarint()
				if !f.State.Valid() || hl > 23 {
					return bad()
				}
				f.History = flow.MakeHistory(string(c.bytes(int(hl))))
			}
			if fl&bSeq != 0 {
				c := &cols[cSeq]
				f.MissingBytes, f.RetransBytes, f.OverlapBytes = c.uvarint(), c.uvarint(), c.uvarint()
			}
		}
	}
	for i := range cols {
		if cols[i].Bad {
			return bad()
		}
	}
	// A flow that left its peer to a later one got it from that one.
	for i := uint64(0); i < flowBlock; i++ {
		if rb.present&(1<<i) != 0 && flags[i]&bPeer != 0 && rb.flows[i].Peer == 0 {
			return bad()
		}
	}
	return nil
}

// The flag bits are the stored layout: this fails to compile if an
// edit above moves one (a change of layout is a new schema version).
var _ = [1]struct{}{}[bSeq^1<<6|bTunnel^1<<10|bNoPayload^1<<19|bNoPayload<<1^1<<bTCPShift]
