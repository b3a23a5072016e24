package index

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/internal/readahead"
	"github.com/pcapflow/pcapflow/pcapio"
)

// MaxTunnelDepth bounds how many tunnels inside each other are opened.
const MaxTunnelDepth = 3

// batchLen is the number of records a decoded batch carries.
const batchLen = 256

// decodedBatch carries decoded packets from the reading goroutine to the
// flow table.
type decodedBatch struct {
	n      int
	ps     [MaxTunnelDepth + 1][batchLen]pcapio.Packet // by depth: the packets, then what their tunnels carry (packet)
	depth  [batchLen]uint8
	meta   [batchLen]pcapio.Record // without Data and Raw
	cap    [batchLen]int32         // the capture of each record
	key    [batchLen]flow.Key      // flow.KeyOf the packet
	hash   [batchLen]uint64        // its hash, for flow.Table.Prefetch and AddKeyed
	events []streamEvent           // captures starting and ending, in order with the records
	offset int64                   // bytes read of the current capture
}

// packet is record i's packet (depth 0) or what its tunnels carry. The
// batch keeps each depth's packets together: nearly every record has
// only the first, and a record's four side by side made both cores
// stream 992 bytes of packets per record where 248 are used.
func (b *decodedBatch) packet(i, depth int) *pcapio.Packet { return &b.ps[depth][i] }

// streamEvent marks a capture starting (before the record at position
// at) or ending (after the records before at).
type streamEvent struct {
	at    int
	start bool
	ci    int
	info  *CaptureInfo // start: what is known before reading; end: with its layout
	err   error        // end: the error that stopped reading it early, if any
	point []byte       // a gzip checkpoint of capture ci at offset out (resume.go), if not nil
	out   int64
}

// captureStream reads the captures of an archive in time order: each one
// from its first packet on, and where captures overlap in time (several
// interfaces captured at once), their records merged by time as mergecap
// does; captures that follow each other (rotated files) are simply read
// one after the other. It decodes every record on the way.
type captureStream struct {
	srcs    []source
	stdin   io.Reader
	opts    *Options
	firstCI int // index of the first capture opened
	heads   minHeap[*streamHead]
	rival   *streamHead // the head read after heads[0], nil if none
	spare   []byte      // the read buffer of the last capture closed
	opened  int
	points  []streamEvent // gzip checkpoints read since the last record
	coder   resumeCoder
	aheads  int // open captures decompressing ahead (pcapio.Reader.DecompressAhead)
}

// maxAhead bounds the captures decompressing ahead at once.
const maxAhead = 4

// streamHead is an open capture and its next record, or a capture not
// opened yet (r == nil) with the time of its first packet.
type streamHead struct {
	ts    int64
	order int // position in srcs: ties keep the sorted order
	ci    int
	r     *pcapio.Reader
	file  *os.File
	rec   pcapio.Record
	info  *CaptureInfo
	max   int64 // records read so far (Options.MaxPackets)
	// aheads is the stream's count of captures decompressing ahead, when
	// this one is one of them.
	aheads *int
}

// before reports whether a's next record is read before b's.
func (a *streamHead) before(b *streamHead) bool {
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	if (a.r != nil) != (b.r != nil) {
		return a.r != nil // go on with an open capture before opening the next
	}
	return a.order < b.order
}

// run reads every capture into batches. free supplies empty batches;
// run stops at the end or when stop is closed.
func (s *captureStream) run(ctx context.Context, free <-chan *decodedBatch, out chan<- *decodedBatch, stop <-chan struct{}) {
	defer close(out)
	defer func() {
		for _, h := range s.heads {
			h.close()
		}
	}()
	for i, src := range s.srcs {
		ts := src.first
		if src.empty {
			ts = 1<<63 - 1
		}
		s.heads = append(s.heads, &streamHead{ts: ts, order: i})
	}
	heap.Init(&s.heads)
	var b *decodedBatch
	send := func() bool {
		select {
		case out <- b:
			b = nil
			return true
		case <-stop:
			return false
		}
	}
	for {
		if b == nil {
			select {
			case b = <-free:
			case <-stop:
				return
			}
			b.n, b.events = 0, b.events[:0]
		}
		if len(s.heads) == 0 {
			if b.n > 0 || len(b.events) > 0 {
				send()
			}
			return
		}
		h := s.heads[0]
		if h.r == nil {
			s.open(h, b)
			if h.r == nil {
				heap.Pop(&s.heads)
			} else {
				heap.Fix(&s.heads, 0)
			}
			s.rival = s.heads.second()
			continue
		}
		s.decode(h, b)
		err := s.advance(h)
		s.flushPoints(b)
		if err != nil {
			s.end(h, b, err)
			heap.Pop(&s.heads)
			s.rival = s.heads.second()
		} else if s.rival != nil && !h.before(s.rival) {
			// Only then can the order change: captures that follow
			// each other in time (rotated files) read without
			// touching the heap, as fast as one capture.
			heap.Fix(&s.heads, 0)
			s.rival = s.heads.second()
		}
		if b.n == batchLen {
			if h.r != nil { // (end set it for a capture that ended)
				b.offset = h.r.Offset()
			}
			if !send() {
				return
			}
		}
	}
}

// open opens a capture and reads its first record. A capture gets its
// index once it opens as one: the captures of an archive are numbered
// without gaps.
func (s *captureStream) open(h *streamHead, b *decodedBatch) {
	src := s.srcs[h.order]
	info := &CaptureInfo{Name: filepath.Base(src.path), Path: src.path, Size: -1}
	h.info = info
	fail := func(err error) {
		b.events = append(b.events, streamEvent{at: b.n, ci: -1, err: err})
	}
	var rd io.Reader
	if src.path == "-" {
		info.Name = "-"
		rd = s.stdin
	} else {
		if abs, err := filepath.Abs(src.path); err == nil {
			info.Path = abs
		}
		f, err := os.Open(src.path)
		if err != nil {
			fail(err)
			return
		}
		h.file = f
		info.Size, info.ModTime, info.Identity, err = Identify(f)
		if err != nil {
			h.close()
			fail(fmt.Errorf("%s: %w", src.path, err))
			return
		}
		killPoint("capture-identified")
		// Read ahead of the decoder: on a cold page cache the disk then
		// works while the packets already read are decoded and tracked.
		// Read no further than the size Identify saw: of a capture still
		// being written, the index then holds exactly the bytes its
		// identity describes, and a later query tells the growth since
		// from a change (locateCapture).
		rd = &sizedReader{io.LimitReader(readahead.New(f), info.Size), info.Size}
	}
	r, err := pcapio.NewReaderBuffer(rd, src.path, s.spare)
	s.spare = nil
	if err != nil {
		h.close()
		fail(err)
		return
	}
	h.r = r
	h.ci = s.firstCI + s.opened
	s.opened++
	b.events = append(b.events, streamEvent{at: b.n, start: true, ci: h.ci, info: info})
	info.Compression = r.Compression()
	if info.Compression == "zstd" && h.file != nil {
		if st, err := h.file.Stat(); err == nil && !pcapio.IsSeekable(h.file, st.Size()) {
			if !s.zstdFrames(h.file, st.Size(), h.ci) {
				s.opts.warn(fmt.Errorf("%s: zstd without a seek table: extracting from it decompresses from the start; 'pcapflow compress %s -o FILE.zst' makes it seekable", src.path, src.path))
			}
		}
	}
	r.OnWarning = s.opts.Warn
	if info.Compression == "gzip" && h.file != nil {
		ci := h.ci
		r.GzipCheckpoints(s.checkpointEvery(), func(p pcapio.GzipCheckpoint) { s.keepPoint(ci, p) })
	}
	// Inflating is the decoder's largest cost in a gzip capture (4.3 of
	// its 5 core-seconds in the 2 GB real capture's): on a core of its
	// own it overlaps with decoding (6.21 → 5.76 s, 4 rounds in turn).
	// Not zstd, whose decoder is several times faster: 3.22 against 3.27
	// s, nothing to gain on two cores for the copy. Captures whose times
	// overlap are open at once; a few of them decompress ahead, so that
	// many open do not each hold its buffers. Not from a pipe (stdin):
	// h.close stops the goroutine and waits for its read, which a pipe
	// may never end.
	if info.Compression == "gzip" && h.file != nil && s.aheads < maxAhead {
		r.DecompressAhead()
		s.aheads++
		h.aheads = &s.aheads
	}
	err = s.advance(h)
	s.flushPoints(b)
	if err != nil {
		s.end(h, b, err)
	}
}

// zstdFrames keeps checkpoints at the frame starts of a zstd capture
// with several frames (pzstd's, or files concatenated), about every
// GzipEvery bytes apart; it reports whether there are any.
func (s *captureStream) zstdFrames(f *os.File, size int64, ci int) bool {
	frames, err := pcapio.ZstdFrames(f, size)
	if err != nil || len(frames) < 2 {
		return false
	}
	every, last := s.checkpointEvery(), int64(0)
	for _, fr := range frames {
		if fr.Out == 0 || fr.Out-last >= every {
			s.keepPoint(ci, pcapio.GzipCheckpoint{In: fr.In * 8, Out: fr.Out, Member: true})
			last = fr.Out
		}
	}
	return true
}

// checkpointEvery is the spacing of compressed captures' checkpoints.
func (s *captureStream) checkpointEvery() int64 {
	if s.opts.gzEvery > 0 {
		return s.opts.gzEvery
	}
	return GzipEvery
}

// keepPoint queues checkpoint p of capture ci for the batch.
func (s *captureStream) keepPoint(ci int, p pcapio.GzipCheckpoint) {
	s.points = append(s.points, streamEvent{ci: ci, point: s.coder.encode(nil, p), out: p.Out})
}

// flushPoints moves the gzip checkpoints read into the batch.
func (s *captureStream) flushPoints(b *decodedBatch) {
	for _, p := range s.points {
		p.at = b.n
		b.events = append(b.events, p)
	}
	s.points = s.points[:0]
}

// advance reads h's next record; io.EOF at the end.
func (s *captureStream) advance(h *streamHead) error {
	if s.opts.MaxPackets > 0 && h.max >= s.opts.MaxPackets {
		return io.EOF
	}
	h.max++
	if err := h.r.Next(&h.rec); err != nil {
		return err
	}
	h.ts = h.rec.Timestamp
	return nil
}

// end closes capture h into the batch.
func (s *captureStream) end(h *streamHead, b *decodedBatch, err error) {
	if err == io.EOF {
		err = nil
	}
	if h.r != nil {
		h.info.Layout = *h.r.Layout()
		b.offset = h.r.Offset()
		// Nothing points into the buffer once the record is decoded: the
		// next capture reads through it.
		s.spare = h.r.Buffer()
	}
	b.events = append(b.events, streamEvent{at: b.n, ci: h.ci, info: h.info, err: err})
	h.close()
}

// sizedReader is a file's reader limited to the size it had when it was
// identified; pcapio.Reader takes its size from Size.
type sizedReader struct {
	io.Reader
	n int64
}

func (r *sizedReader) Size() int64 { return r.n }

// close closes h's reader and file as soon as it ends: an archive of
// many captures must not hold every reader's buffer (1 MiB each, and a
// decompressor's state) until the last one ends.
func (h *streamHead) close() {
	if h.r != nil {
		h.r.Close()
		h.r = nil
	}
	if h.aheads != nil {
		*h.aheads--
		h.aheads = nil
	}
	if h.file != nil {
		h.file.Close()
		h.file = nil
	}
}

// decode adds h's current record to the batch.
func (s *captureStream) decode(h *streamHead, b *decodedBatch) {
	rec := &h.rec
	p := b.packet(b.n, 0)
	p.DecodeWith(rec.LinkType, rec.Data, s.opts.Decode)
	depth := 0
	data := rec.Data
	for outer := p; depth < MaxTunnelDepth && outer.Tunnel != 0; depth++ {
		data = data[outer.InnerOffset:]
		inner := b.packet(b.n, depth+1)
		inner.DecodeWith(outer.InnerLink, data, s.opts.Decode)
		outer = inner
	}
	b.depth[b.n] = uint8(depth)
	// The key and its hash are made here, on the decoding core.
	k := &b.key[b.n]
	k.Set(p)
	b.hash[b.n] = k.Hash()
	m := &b.meta[b.n]
	*m = *rec
	m.Data, m.Raw = nil, nil
	b.cap[b.n] = int32(h.ci)
	b.n++
}

// unsupportedLinks formats the counts of undecodable link types.
func unsupportedLinks(path string, links map[pcapio.LinkType]int) []error {
	ls := make([]int, 0, len(links))
	for l := range links {
		ls = append(ls, int(l))
	}
	sort.Ints(ls)
	var out []error
	for _, l := range ls {
		out = append(out, fmt.Errorf("%s: %d packets of unsupported link type %v were counted but not decoded", path, links[pcapio.LinkType(l)], pcapio.LinkType(l)))
	}
	return out
}
