package index

import (
	"context"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// Progress is updated while captures are read, for a progress display.
// Its fields are safe to read from another goroutine.
type Progress struct {
	Capture atomic.Value // string: name of the capture being read
	Bytes   atomic.Int64 // bytes of the current capture read
	Total   atomic.Int64 // size of the current capture, -1 if unknown
	Packets atomic.Int64 // packets read in all captures
	Flows   atomic.Int64 // flows found in all captures
}

// Settings are the flow semantics an archive is built with; an index
// records them, and every capture added to it is read with the same.
type Settings struct {
	// IdleTimeout ends a connection silent for longer (0: the default,
	// flow.DefaultIdleTimeout; negative: never).
	IdleTimeout time.Duration `json:"idle_timeout"`
	// CloseTimeout ends a closed TCP connection (a RST, or a FIN each
	// way) silent for longer (0: flow.DefaultCloseTimeout).
	CloseTimeout time.Duration `json:"close_timeout,omitempty"`
	// Decode tunes the decoder (VXLAN ports, no decapsulation).
	VXLANPorts []uint16 `json:"vxlan_ports,omitempty"`
	NoTunnels  bool     `json:"no_tunnels,omitempty"`
}

func (s Settings) idle() time.Duration {
	switch {
	case s.IdleTimeout == 0:
		return flow.DefaultIdleTimeout
	case s.IdleTimeout < 0:
		return 0
	}
	return s.IdleTimeout
}

func (s Settings) closeAfter() time.Duration {
	if s.CloseTimeout <= 0 {
		return flow.DefaultCloseTimeout
	}
	return s.CloseTimeout
}

func (s Settings) decode() *pcapio.DecodeOptions {
	if s.VXLANPorts == nil && !s.NoTunnels {
		return nil
	}
	return &pcapio.DecodeOptions{VXLANPorts: s.VXLANPorts, NoTunnels: s.NoTunnels}
}

// Options configure reading captures.
type Options struct {
	Settings
	// KeepSettings continues an index that exists with the settings it
	// records, whatever Settings says (which then apply to a new index
	// only): for a caller that was not asked for any.
	KeepSettings bool
	// Warn receives problems that do not stop the work: a capture cut
	// short, skipped records, undecodable link types. Nil discards them.
	Warn     func(error)
	Progress *Progress
	// Stdin is read for the capture "-" (os.Stdin when nil).
	Stdin io.Reader
	// Settle, when positive, leaves for a later run the captures
	// modified less than Settle before this one began: a writer may still
	// be appending to them (a sensor's newest file), and an index cannot
	// add to a capture it holds. With them wait the new captures after
	// them in time order, which would otherwise make them older than the
	// archive's end. They are listed in BuildResult.Settling.
	Settle time.Duration
	// MaxPackets, when positive, stops reading each capture after that
	// many records (pcap_flow's --packet-max).
	MaxPackets int64
	// Decode, when set, overrides the decoder options of Settings.
	Decode *pcapio.DecodeOptions

	fs        vfs.FS // the store's file system (tests inject faults); nil: the OS's
	memtable  int    // the store's memtable size (tests); 0: the default
	gzEvery   int64  // gzip checkpoint spacing (tests); 0: GzipEvery
	endFlush  int    // IDs the final-value lists hold before they are written (tests); 0: endFlush
	mapFlush  int    // and the lists of VLANs, MACs and tunnel IDs (tests); 0: mappedFlush
	lateFlush int    // flows stored late held before their groups are written (tests); 0: lateFlush
}

func (o *Options) stdin() io.Reader {
	if o.Stdin != nil {
		return o.Stdin
	}
	return os.Stdin
}

func (o *Options) warn(err error) {
	if o.Warn != nil {
		o.Warn(err)
	}
}

// ingestSink receives what reading captures produces: flows as their
// connections end, posting chunks, record checkpoints and captures.
type ingestSink interface {
	eventSink
	// chunk is a full posting chunk of flow id, its n-th.
	chunk(id uint64, n uint32, b []byte) error
	// ended is a connection that ended: its flows (one or two, in ID
	// order), each with its postings not yet in full chunks.
	ended(flows []endedFlow) error
}

// eventSink is the part of an ingestSink that does not need the
// postings: an asyncSink is one, and keeps the postings itself to make
// the chunks and ended flows of the sink it feeds.
type eventSink interface {
	// started is a flow that just started (its key and first packet's
	// attributes are set); first is that packet.
	started(f *flow.Flow, first PacketRef) error
	// inCapture says flow id has packets in capture ci.
	inCapture(id uint64, ci int)
	// checkpoints are the offsets of capture ci's records n*K*1024,
	// n*K*1024 + K, ... (K = CheckpointEvery): chunk n.
	checkpoints(ci int, n int, offs []int64) error
	// capture is a capture read to its end (or its damage).
	capture(ci int, info *CaptureInfo) error
	// resumePoint is a gzip checkpoint of capture ci at decompressed
	// offset out, encoded (resume.go).
	resumePoint(ci int, out int64, v []byte) error
}

// ingest reads captures through the decoder into a flow table and hands
// what it produces to a sink. The table goes on from one capture to the
// next: a connection that crosses a file rotation is one flow per
// direction.
type ingest struct {
	opts *Options
	sink eventSink
	t    *flow.Table
	ps   postings
	// Either own is sink, synchronous, and the table's goroutine keeps ps
	// and hands it the chunks and ended flows; or async is sink, which
	// owns ps for the run: post and ended hand it slots and references.
	own   ingestSink
	async *asyncSink
	caps  map[int]*capState
	errs  []error   // captures that could not be (fully) read
	werr  error     // the sink's first error
	cur   int       // capture of the last record
	curCS *capState // and its state (caps[cur]): a map lookup a packet was 1% of the run
	// curRef is the record being accounted.
	curRef PacketRef
	// When a run continues an archive, touched has a bit for each block
	// of flowBlock IDs below watchBelow (the IDs of earlier runs) with a
	// flow whose connection got a packet in this run. A restored block
	// none of whose flows did, and in which no flow ended or started
	// (pendingBlock.changed), has the provisional values it had.
	watchBelow uint64
	touched    []uint64
}

// watch starts tracking which blocks of IDs below id get packets.
func (g *ingest) watch(id uint64) {
	g.watchBelow = id
	g.touched = make([]uint64, (id-1)/flowBlock/64+1)
}

// touch marks the block of flow id.
func (g *ingest) touch(id uint64) {
	if id != 0 && id < g.watchBelow {
		b := (id - 1) / flowBlock
		g.touched[b/64] |= 1 << (b % 64)
	}
}

// untouched reports whether no flow of the block of id got a packet, nor
// its connection's other flow, in this run. It is false for IDs of this
// run.
func (g *ingest) untouched(id uint64) bool {
	if id == 0 || id >= g.watchBelow {
		return false
	}
	b := (id - 1) / flowBlock
	return g.touched[b/64]&(1<<(b%64)) == 0
}

// capState is what is gathered about a capture being read.
type capState struct {
	info     *CaptureInfo
	ckpts    []int64
	nckpt    int
	badLinks map[pcapio.LinkType]int
}

// postings are the packets of the live flows not yet in full chunks, by
// table slot, with the pool of their buffers. One goroutine owns them at
// a time: the table's when the sink is synchronous (memSink); with an
// asyncSink, the sink's goroutine from the run's first packet to the
// sink's close, and the table's goroutine only hands it each packet's
// slot and reference. Appending to a million flows' buffers is a cache
// miss a packet: on the 2 GB real capture, 0.3 s of the table's
// goroutine, the pass's critical path, moved to the sink's, which has
// room.
type postings struct {
	slots postingSlots
	pool  bufPool
}

// add appends packet r to the postings of flow id, in slot fi; a chunk
// that fills goes to dst.
func (ps *postings) add(fi int32, id uint64, r PacketRef, dst ingestSink) error {
	p := ps.slots.at(fi)
	p.add(r, &ps.pool)
	if p.n < chunkMax {
		return nil
	}
	b := p.view(&ps.pool).appendChunk(nil, PacketRef{})
	err := dst.chunk(id, p.chunks, b)
	p.chunks++
	p.reset()
	return err
}

// ended is the postings of slot's flow f, which ended, for the sink.
func (ps *postings) ended(slot int32, f *flow.Flow) endedFlow {
	p := ps.slots.at(slot)
	return endedFlow{f, p.chunks, p.view(&ps.pool)}
}

// release frees the postings of slot, whose flow the sink has had.
func (ps *postings) release(slot int32) {
	p := ps.slots.at(slot)
	p.free(&ps.pool)
	p.chunks = 0
}

// postingSlots holds the posting buffer of each flow slot of the table,
// in fixed-size chunks: a million flows' buffers are never copied.
type postingSlots struct {
	chunks [][]slotPosting
}

type slotPosting struct {
	postingBuf
	chunks uint32 // full chunks written
}

const postingSlotBits = 12

func (t *postingSlots) at(i int32) *slotPosting {
	for int(i>>postingSlotBits) >= len(t.chunks) {
		t.chunks = append(t.chunks, make([]slotPosting, 1<<postingSlotBits))
	}
	return &t.chunks[i>>postingSlotBits][i&(1<<postingSlotBits-1)]
}

func newIngest(opts *Options, sink eventSink, firstID uint64) *ingest {
	g := &ingest{opts: opts, sink: sink, caps: map[int]*capState{}, cur: -1}
	switch s := sink.(type) {
	case *asyncSink:
		g.async, s.ps = s, &g.ps
	case ingestSink:
		g.own = s
	default:
		panic("index: an ingest's sink keeps no postings")
	}
	g.t = flow.NewTable(flow.Options{
		FirstID:      firstID,
		IdleTimeout:  opts.idle(),
		CloseTimeout: opts.closeAfter(),
		OnEnd:        g.ended,
		OnAttach:     func(fi int32, h flow.Held) { g.post(fi, PacketRef{h.Capture, h.Index}) },
		OnCapture:    func(fi int32, ci int) { g.sink.inCapture(g.t.Flow(fi).ID, ci) },
		OnStart: func(fi int32) {
			if err := g.sink.started(g.t.Flow(fi), g.curRef); err != nil && g.werr == nil {
				g.werr = err
			}
		},
	})
	return g
}

// post appends a packet to flow fi's postings, writing a full chunk.
func (g *ingest) post(fi int32, r PacketRef) {
	if g.watchBelow != 0 {
		// A packet can change its flow's record and, through the
		// connection's state and history, its peer's.
		f := g.t.Flow(fi)
		g.touch(f.ID)
		g.touch(f.Peer)
	}
	id := g.t.Flow(fi).ID
	if g.async != nil {
		g.async.post(fi, id, r)
		return
	}
	if err := g.ps.add(fi, id, r, g.own); err != nil && g.werr == nil {
		g.werr = err
	}
}

// endedFlow is a flow whose connection ended, with its postings.
type endedFlow struct {
	f      *flow.Flow
	chunks uint32      // full chunks written
	post   postingView // the rest
}

// ended hands the flows of an ended connection to the sink.
func (g *ingest) ended(ends []flow.Ended) {
	if g.async != nil {
		g.async.endedSlots(ends)
		return
	}
	var efs [2]endedFlow
	for i, e := range ends {
		efs[i] = g.ps.ended(e.Slot, e.Flow)
	}
	if err := g.own.ended(efs[:len(ends)]); err != nil && g.werr == nil {
		g.werr = err
	}
	for _, e := range ends {
		g.ps.release(e.Slot)
	}
}

// read reads the captures (in time order: see captureStream) with the
// first taking index firstCI.
func (g *ingest) read(ctx context.Context, srcs []source, stdin io.Reader, firstCI int) error {
	dec := g.opts.Decode
	if dec == nil {
		dec = g.opts.Settings.decode()
	}
	o := *g.opts
	o.Decode = dec
	cs := &captureStream{srcs: srcs, stdin: stdin, opts: &o, firstCI: firstCI}
	// Reading and decoding run in their own goroutine, batches ahead of
	// the flow table: the two overlap on two cores.
	out := make(chan *decodedBatch, decodedAhead-2)
	free := make(chan *decodedBatch, decodedAhead)
	for i := 0; i < cap(free); i++ {
		free <- &decodedBatch{}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		cs.run(ctx, free, out, stop)
	}()
	defer func() {
		close(stop)
		for range out {
		}
		<-done
	}()
	pr := g.opts.Progress
	for b := range out {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev := 0
		for i := 0; i < b.n; i++ {
			if i%prefetchGroup == 0 {
				g.t.Prefetch(b.hash[i:min(i+prefetchGroup, b.n)])
			}
			for ev < len(b.events) && b.events[ev].at == i {
				g.event(&b.events[ev])
				ev++
			}
			g.record(b, i)
		}
		for ; ev < len(b.events); ev++ {
			g.event(&b.events[ev])
		}
		if as := g.async; as != nil {
			as.flush()
			if err := as.error(); err != nil && g.werr == nil {
				g.werr = err
			}
		}
		if g.werr != nil {
			return g.werr
		}
		if pr != nil {
			pr.Bytes.Store(b.offset)
			pr.Packets.Add(int64(b.n))
			pr.Flows.Store(int64(g.t.NextID() - 1))
		}
		free <- b
	}
	return g.werr
}

// decodedAhead is how many decoded batches the reading goroutine may
// be ahead of the flow table: 12 k records, about 5 ms of the table's
// work. The table's goroutine is the pass's critical path, and with the
// decoder, the sink and Pebble all busy on two cores it is often
// runnable with no core free, for as long as a time slice (10 ms); a
// short queue then ran dry behind it and stalled the decoder in turn.
// On the 2 GB real capture, 48 batches instead of 6 (1.5 k records)
// took a run from 4.96 to 4.44 s (8 alternating rounds on a busy
// machine, 7.7 against 8.1 CPU-s: fewer goroutine hand-offs), for 4 MB
// more resident (batches' tunnel layers are not touched without
// tunnels). (BENCHMARKS.md, eighth session.)
const decodedAhead = 48

// prefetchGroup is how many packets the flow table fetches the memory
// of at once, before adding them (flow.Table.Prefetch): on the 2 GB real
// capture, 16 took the flow table's goroutine from 3.60 to 3.26
// core-seconds (its lookups from 1.02 to 0.38 s, plus 0.32 s in
// Prefetch).
const prefetchGroup = 16

// record accounts record i of a batch.
func (g *ingest) record(b *decodedBatch, i int) {
	m := &b.meta[i]
	ci := int(b.cap[i])
	if ci != g.cur {
		g.cur, g.curCS = ci, g.caps[ci]
		g.t.SetCapture(ci)
	}
	cs := g.curCS
	info := cs.info
	info.Packets++
	info.Bytes += uint64(m.OrigLen)
	if info.Packets == 1 {
		info.First, info.Last = m.Timestamp, m.Timestamp
	} else {
		info.Last = max(info.Last, m.Timestamp)
	}
	if m.Index%CheckpointEvery == 0 {
		g.checkpoint(ci, cs, m.Offset)
	}
	p := b.packet(i, 0)
	if p.IPVersion == 0 {
		info.NonIP++
	}
	if p.Problem == pcapio.ProblemUnsupportedLink {
		if cs.badLinks == nil {
			cs.badLinks = map[pcapio.LinkType]int{}
		}
		cs.badLinks[m.LinkType]++
	}
	ref := PacketRef{int32(ci), m.Index}
	g.curRef = ref
	fi := g.t.AddKeyed(m, p, &b.key[i], b.hash[i])
	if fi >= 0 {
		g.post(fi, ref)
	}
	for d := 1; d <= int(b.depth[i]); d++ {
		// A tunnel: the same record also belongs to the flow it carries.
		if fi = g.t.AddInner(m, b.packet(i, d), fi, b.packet(i, d-1)); fi >= 0 {
			g.post(fi, ref)
		}
	}
}

func (g *ingest) checkpoint(ci int, cs *capState, off int64) {
	cs.ckpts = append(cs.ckpts, off)
	if len(cs.ckpts) == checkpointChunk {
		g.flushCheckpoints(ci, cs)
	}
}

func (g *ingest) flushCheckpoints(ci int, cs *capState) {
	if len(cs.ckpts) == 0 {
		return
	}
	if err := g.sink.checkpoints(ci, cs.nckpt, cs.ckpts); err != nil && g.werr == nil {
		g.werr = err
	}
	cs.nckpt++
	cs.ckpts = cs.ckpts[:0]
}

// event handles a capture starting or ending.
func (g *ingest) event(ev *streamEvent) {
	if ev.point != nil {
		if err := g.sink.resumePoint(ev.ci, ev.out, ev.point); err != nil && g.werr == nil {
			g.werr = err
		}
		return
	}
	if ev.ci < 0 { // a capture that could not be opened
		g.errs = append(g.errs, ev.err)
		return
	}
	if ev.start {
		g.caps[ev.ci] = &capState{info: ev.info}
		g.cur = -1 // SetCapture again
		if pr := g.opts.Progress; pr != nil {
			pr.Capture.Store(ev.info.Name)
			pr.Bytes.Store(0)
			pr.Total.Store(ev.info.Size)
		}
		ev.info.firstID = g.t.NextID()
		return
	}
	cs := g.caps[ev.ci]
	delete(g.caps, ev.ci)
	g.cur, g.curCS = -1, nil
	info := cs.info
	g.t.EndCapture(ev.ci)
	g.flushCheckpoints(ev.ci, cs)
	info.Flows = g.t.NextID() - info.firstID
	for _, w := range unsupportedLinks(info.Path, cs.badLinks) {
		g.opts.warn(w)
	}
	if ev.err != nil {
		info.Warning = ev.err.Error()
		info.Damaged = !pcapio.IsWarning(ev.err)
		if pcapio.IsWarning(ev.err) {
			g.opts.warn(ev.err)
		} else {
			g.errs = append(g.errs, ev.err)
		}
	}
	if info.Packets == 0 && ev.err != nil && !pcapio.IsWarning(ev.err) && info.Layout.Format == 0 {
		return // not a capture at all: not part of the archive
	}
	if err := g.sink.capture(ev.ci, info); err != nil && g.werr == nil {
		g.werr = err
	}
}
