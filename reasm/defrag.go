package reasm

import (
	"sort"

	"github.com/pcapflow/pcapflow/pcapio"
)

// Defrag reassembles IPv4 and IPv6 fragments into datagrams, so that a
// TCP segment or UDP datagram split by IP reaches the stream whole.
// Overlapping fragments keep the first copy, or with Overlap set to
// OverlapLast the last (like the stream policy).
// Memory is bounded: at most MaxDatagrams incomplete datagrams of at most
// 64 KiB each; the oldest is dropped (and counted) to make room, and
// datagrams idle for a minute of capture time are dropped.
type Defrag struct {
	MaxDatagrams int // default 4096
	Overlap      OverlapPolicy
	pending      map[fragKey]*datagram
	Dropped      int // incomplete datagrams given up
	buf          []byte
}

type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
}

type datagram struct {
	pieces  []piece
	total   int // length of the whole payload, once the last fragment is seen
	lastTS  int64
	firstTS int64
}

type piece struct {
	off  int
	data []byte
}

const maxDatagram = 64 << 10

// Add feeds one fragment (p.Fragment set; data is the captured frame). It
// returns the reassembled transport payload (transport header included)
// when this fragment completes its datagram; the slice is valid until the
// next call.
func (d *Defrag) Add(ts int64, p *pcapio.Packet, data []byte) ([]byte, bool) {
	if d.pending == nil {
		d.pending = map[fragKey]*datagram{}
	}
	if d.MaxDatagrams == 0 {
		d.MaxDatagrams = 4096
	}
	k := fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto}
	g := d.pending[k]
	if g == nil {
		if len(d.pending) >= d.MaxDatagrams {
			d.evict(ts)
		}
		g = &datagram{firstTS: ts, total: -1}
		d.pending[k] = g
	}
	g.lastTS = ts
	payload := p.IPPayload(data)
	if len(payload) < p.IPPayloadLen { // cut by the snaplen: cannot complete
		payload = payload[:0]
	}
	if p.FragOffset+len(payload) > maxDatagram {
		delete(d.pending, k)
		d.Dropped++
		return nil, false
	}
	if !p.MoreFragments {
		g.total = p.FragOffset + p.IPPayloadLen
	}
	if len(payload) > 0 {
		g.pieces = append(g.pieces, piece{p.FragOffset, append([]byte(nil), payload...)})
	}
	if g.total < 0 {
		return nil, false
	}
	// Complete when the pieces cover [0, total).
	sorted := append([]piece(nil), g.pieces...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].off < sorted[j].off })
	covered := 0
	for _, pc := range sorted {
		if pc.off > covered {
			return nil, false
		}
		covered = max(covered, pc.off+len(pc.data))
	}
	if covered < g.total {
		return nil, false
	}
	if cap(d.buf) < g.total {
		d.buf = make([]byte, g.total)
	}
	out := d.buf[:g.total]
	filled := make([]bool, g.total)
	for _, pc := range g.pieces { // in arrival order
		for i, c := range pc.data {
			if j := pc.off + i; j < g.total && (!filled[j] || d.Overlap == OverlapLast) {
				out[j], filled[j] = c, true
			}
		}
	}
	delete(d.pending, k)
	return out, true
}

// evict drops the datagram idle longest.
func (d *Defrag) evict(now int64) {
	var oldest fragKey
	first := true
	var ots int64
	for k, g := range d.pending {
		if now-g.lastTS > 60e9 {
			delete(d.pending, k)
			d.Dropped++
			continue
		}
		if first || g.lastTS < ots || (g.lastTS == ots && lessKey(k, oldest)) {
			oldest, ots, first = k, g.lastTS, false
		}
	}
	if len(d.pending) >= d.MaxDatagrams && !first {
		delete(d.pending, oldest)
		d.Dropped++
	}
}

func lessKey(a, b fragKey) bool {
	if a.id != b.id {
		return a.id < b.id
	}
	return string(a.src[:]) < string(b.src[:])
}
