package reasm

import (
	"slices"

	"github.com/pcapflow/pcapflow/pcapio"
)

// Assembler turns the records of selected flows, fed in capture order,
// into per-flow byte streams: TCP flows reassembled by Stream, UDP flows
// as their datagrams' payloads in order. IP fragments are reassembled
// first.
type Assembler struct {
	pol  Policy
	open func(flow uint64, proto uint8) Sink
	done func(flow uint64, st Stats)
	// Ended, when set, is called as soon as a flow's stream has ended (its
	// FIN was reached, or Close), so that its output can be finished.
	Ended  func(flow uint64)
	flows  map[uint64]*flowState // flows outside dense
	dense  []flowState           // flows base, base+1, ... (Expect)
	base   uint64
	depth  map[uint64]uint8
	defrag Defrag
	pkt    pcapio.Packet
	// Decode tunes the decoder (VXLAN ports).
	Decode *pcapio.DecodeOptions
	Stats  AssemblerStats
	// OnGap, when set, is told of every hole a TCP stream gives up: n
	// bytes missing at stream offset off of flow (Stream.OnGap).
	OnGap func(flow, off, n uint64)
}

// Expect tells the assembler which flows will be fed. When their IDs
// are dense (the usual case: a filter's flows, or all of them), their
// state lives in a slice indexed by ID instead of a map, which saved a
// fifth of a run over 1.6 M streams in cache misses.
func (a *Assembler) Expect(ids []uint64) {
	if len(ids) == 0 || len(a.flows) > 0 || a.dense != nil {
		return
	}
	lo, hi := ids[0], ids[0]
	for _, id := range ids {
		lo, hi = min(lo, id), max(hi, id)
	}
	if span := hi - lo + 1; span <= 2*uint64(len(ids))+1024 {
		a.base, a.dense = lo, make([]flowState, span)
	}
}

// state returns flow id's state, making it if needed; it is not open
// until the flow's first packet with ports.
func (a *Assembler) state(id uint64) *flowState {
	if i := id - a.base; i < uint64(len(a.dense)) {
		return &a.dense[i]
	}
	fs := a.flows[id]
	if fs == nil {
		fs = &flowState{}
		a.flows[id] = fs
	}
	return fs
}

// SetDepth says that flow id is carried inside depth tunnels (its
// flow.Flow.Depth): its packets are the ones those tunnels carry.
func (a *Assembler) SetDepth(id uint64, depth uint8) {
	if depth > 0 {
		a.depth[id] = depth
	}
}

// AssemblerStats counts what an Assembler skipped.
type AssemblerStats struct {
	NotTransport int // records without a TCP or UDP header (other protocols, undecodable)
	Fragments    int // IP fragments fed to reassembly
}

type flowState struct {
	open bool
	tcp  *Stream
	sink Sink // UDP
	err  error
}

// NewAssembler returns an assembler. open is called at a flow's first
// TCP or UDP packet for the sink of its bytes; done, if not nil, by Close
// for every flow with its final counters (retransmissions after a FIN
// still count).
func NewAssembler(pol Policy, open func(flow uint64, proto uint8) Sink, done func(flow uint64, st Stats)) *Assembler {
	a := &Assembler{pol: pol, open: open, done: done, flows: map[uint64]*flowState{}, depth: map[uint64]uint8{}}
	a.defrag.Overlap = pol.Overlap
	return a
}

// Record feeds one record of flow id.
func (a *Assembler) Record(id uint64, rec *pcapio.Record) error {
	p := &a.pkt
	data := rec.Data
	p.DecodeWith(rec.LinkType, data, a.Decode)
	for d := a.depth[id]; d > 0; d-- { // open the tunnels around the flow's packets
		if p.Tunnel == 0 {
			a.Stats.NotTransport++
			return nil
		}
		data = data[p.InnerOffset:]
		p.DecodeWith(p.InnerLink, data, a.Decode)
	}
	payload := p.PayloadData(data)
	if p.Fragment {
		a.Stats.Fragments++
		whole, ok := a.defrag.Add(rec.Timestamp, p, data)
		if !ok {
			return nil
		}
		p.DecodeTransport(whole)
		payload = p.PayloadData(whole)
	}
	if p.IPVersion == 0 || (p.Proto != pcapio.ProtoTCP && p.Proto != pcapio.ProtoUDP) || !p.HasPorts {
		a.Stats.NotTransport++
		return nil
	}
	fs := a.state(id)
	if !fs.open {
		fs.open = true
		sink := a.open(id, p.Proto)
		if p.Proto == pcapio.ProtoTCP {
			fs.tcp = NewStream(a.pol, sink)
			if a.OnGap != nil {
				fs.tcp.OnGap = func(off, n uint64) { a.OnGap(id, off, n) }
			}
		} else {
			fs.sink = sink
		}
	}
	if fs.tcp != nil {
		if !p.HasTCPHeader {
			a.Stats.NotTransport++
			return nil
		}
		wasDone := fs.tcp.Done()
		fs.tcp.Segment(rec.Timestamp, p.Seq, p.TCPFlags, payload, p.PayloadLen)
		if fs.tcp.Done() && !wasDone && a.Ended != nil {
			a.Ended(id)
		}
		return fs.tcp.Err()
	}
	if fs.sink != nil && len(payload) > 0 && fs.err == nil {
		fs.err = fs.sink.Data(rec.Timestamp, payload)
	}
	return fs.err
}

// Close ends every stream (buffered data is delivered, holes become gaps),
// calls Ended for streams that had not ended, and done for every flow.
func (a *Assembler) Close() error {
	// In ID order, so that what Close delivers (streams that never saw
	// their FIN) comes out the same on every run.
	ids := make([]uint64, 0, len(a.flows))
	for id := range a.flows {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var first error
	end := func(id uint64, fs *flowState) {
		var st Stats
		if fs.tcp != nil {
			wasDone := fs.tcp.Done()
			fs.tcp.Close()
			st = fs.tcp.Stats()
			if err := fs.tcp.Err(); err != nil && first == nil {
				first = err
			}
			if !wasDone && a.Ended != nil {
				a.Ended(id)
			}
		} else {
			if fs.err != nil && first == nil {
				first = fs.err
			}
			if a.Ended != nil {
				a.Ended(id)
			}
		}
		if a.done != nil {
			a.done(id, st)
		}
	}
	m := 0
	for ; m < len(ids) && ids[m] < a.base; m++ {
		end(ids[m], a.flows[ids[m]])
	}
	for i := range a.dense {
		if fs := &a.dense[i]; fs.open {
			end(a.base+uint64(i), fs)
		}
	}
	for ; m < len(ids); m++ {
		end(ids[m], a.flows[ids[m]])
	}
	return first
}
