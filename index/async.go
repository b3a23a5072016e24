package index

import (
	"sync"
	"sync/atomic"

	"github.com/pcapflow/pcapflow/flow"
)

// asyncSink hands what the flow table produces to another sink in its
// own goroutine, in batches, in order: the attribute lists, the encoding
// of records and the store's writes then run beside the table instead of
// after it, on a second core.
type asyncSink struct {
	dst ingestSink
	// ps, when set (newIngest sets it), are the postings this sink's
	// goroutine keeps for the table (post, endedSlots).
	ps   *postings
	cur  *eventBatch
	out  chan *eventBatch
	free chan *eventBatch
	wg   sync.WaitGroup
	// failed is the first error the sink's goroutine met, stored once by
	// that goroutine. The table reads it for every flow it starts: it
	// was a mutex, locked by both goroutines, and moving its cache line
	// between the cores took 80 ms of the table's goroutine (the
	// critical path) on the 2 GB real capture.
	failed atomic.Pointer[error]
}

type eventKind uint8

const (
	evStarted eventKind = iota
	evEnded
	evInCapture
	evCheckpoints
	evCapture
	evResume
)

// sinkEvent is one call to the sink. Flows, postings and bytes live in
// the batch's arrays; the event holds their positions.
type sinkEvent struct {
	kind   eventKind
	nflows uint8
	ci     int
	n      uint32
	id     uint64
	ref    PacketRef
	at     int // first flow (batch.flows), first slot of an ended connection (batch.slots), or offset in data
	len    int
	info   *CaptureInfo
	pk     int // packets posted before it (batch.pks)
}

// postRec is a packet of flow id, in table slot slot, for the postings.
type postRec struct {
	slot int32
	ref  PacketRef
	id   uint64
}

type eventBatch struct {
	evs   []sinkEvent
	flows []flow.Flow
	data  []byte
	offs  []int64
	pks   []postRec
	slots []int32
}

// event appends e, after the packets posted so far.
func (b *eventBatch) event(e sinkEvent) {
	e.pk = len(b.pks)
	b.evs = append(b.evs, e)
}

// batchFlows bounds the flows a batch carries before it is sent: a jump
// of the clock (the next capture two hours later) ends every live
// connection at one packet, and one batch holding them all, kept in the
// free list at that size, was the largest thing in an archive's heap.
// Then the sink's queue fills with batches of batchFlows ended flows:
// 4096 made it 18 MB at the jump, and the two-capture archive of the
// 2 GB real capture peaked at 329 MB; 1024, 317 MB in the same time
// (3 rounds in turn). A batch of a decoded batch's packets (batchLen,
// 256) carries fewer flows than that.
const batchFlows = 1024

func (b *eventBatch) reset() {
	if cap(b.flows) > 2*batchFlows {
		*b = eventBatch{} // let a batch that a burst grew go
		return
	}
	b.evs, b.flows, b.data, b.offs = b.evs[:0], b.flows[:0], b.data[:0], b.offs[:0]
	b.pks, b.slots = b.pks[:0], b.slots[:0]
}

func newAsyncSink(dst ingestSink) *asyncSink {
	// Nearly as deep as the decoder's queue is in time (decodedAhead): a
	// batch is sent after each decoded batch, so 34 hold about 3.5 ms of
	// the table's output. The sink falls behind in bursts (many flows
	// starting or ending at once), and with the queue full the table
	// waits for it while a core idles: on the 2 GB real capture 34
	// instead of 18 took 2.645 s to 2.575 (6 rounds in turn; 2.53 to 2.50
	// at a quieter hour), at the same peak RSS; 66 were as fast, for up
	// to 7 MB more.
	a := &asyncSink{dst: dst, out: make(chan *eventBatch, 32), free: make(chan *eventBatch, 34)}
	for i := 0; i < cap(a.free); i++ {
		a.free <- &eventBatch{}
	}
	a.cur = <-a.free
	a.wg.Add(1)
	go a.run()
	return a
}

func (a *asyncSink) run() {
	defer a.wg.Done()
	for b := range a.out {
		if a.failed.Load() == nil {
			if err := a.apply(b); err != nil {
				a.failed.Store(&err)
			}
		}
		b.reset()
		a.free <- b
	}
}

func (a *asyncSink) error() error {
	if p := a.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// flush sends the events gathered so far.
func (a *asyncSink) flush() {
	if len(a.cur.evs) == 0 && len(a.cur.pks) == 0 {
		return
	}
	a.out <- a.cur
	a.cur = <-a.free
}

// close sends the last events and waits until they are applied.
func (a *asyncSink) close() error {
	a.flush()
	close(a.out)
	a.wg.Wait()
	return a.error()
}

func (a *asyncSink) apply(b *eventBatch) error {
	var ends [2]endedFlow
	pk := 0
	// post adds the packets posted before event (or batch) end.
	post := func(end int) error {
		for ; pk < end; pk++ {
			r := &b.pks[pk]
			if err := a.ps.add(r.slot, r.id, r.ref, a.dst); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range b.evs {
		e := &b.evs[i]
		if err := post(e.pk); err != nil {
			return err
		}
		var err error
		switch e.kind {
		case evStarted:
			err = a.dst.started(&b.flows[e.at], e.ref)
		case evEnded:
			for j := 0; j < int(e.nflows); j++ {
				ends[j] = a.ps.ended(b.slots[e.at+j], &b.flows[e.len+j])
			}
			err = a.dst.ended(ends[:e.nflows])
			for j := 0; j < int(e.nflows); j++ {
				a.ps.release(b.slots[e.at+j])
			}
		case evInCapture:
			a.dst.inCapture(e.id, e.ci)
		case evCheckpoints:
			err = a.dst.checkpoints(e.ci, int(e.n), b.offs[e.at:e.at+e.len])
		case evCapture:
			err = a.dst.capture(e.ci, e.info)
		case evResume:
			err = a.dst.resumePoint(e.ci, int64(e.id), b.data[e.at:e.at+e.len])
		}
		if err != nil {
			return err
		}
	}
	return post(len(b.pks))
}

// post hands the sink's goroutine a packet of flow id, in table slot
// fi, for its postings (ps).
func (a *asyncSink) post(fi int32, id uint64, r PacketRef) {
	a.cur.pks = append(a.cur.pks, postRec{fi, r, id})
}

// endedSlots is ended for the postings ps keeps: the flows of the
// connection that ended and their slots, whose postings the sink's
// goroutine hands on and then frees.
func (a *asyncSink) endedSlots(ends []flow.Ended) {
	b := a.cur
	e := sinkEvent{kind: evEnded, nflows: uint8(len(ends)), at: len(b.slots), len: len(b.flows)}
	for _, x := range ends {
		b.flows = append(b.flows, *x.Flow)
		b.slots = append(b.slots, x.Slot)
	}
	b.event(e)
	if len(b.flows) >= batchFlows {
		a.flush()
	}
}

func (a *asyncSink) started(f *flow.Flow, first PacketRef) error {
	b := a.cur
	b.flows = append(b.flows, *f)
	b.event(sinkEvent{kind: evStarted, at: len(b.flows) - 1, ref: first})
	return a.error()
}

func (a *asyncSink) inCapture(id uint64, ci int) {
	a.cur.event(sinkEvent{kind: evInCapture, id: id, ci: ci})
}

func (a *asyncSink) resumePoint(ci int, out int64, v []byte) error {
	b := a.cur
	b.event(sinkEvent{kind: evResume, ci: ci, id: uint64(out), at: len(b.data), len: len(v)})
	b.data = append(b.data, v...)
	return a.error()
}

func (a *asyncSink) checkpoints(ci, n int, offs []int64) error {
	b := a.cur
	b.event(sinkEvent{kind: evCheckpoints, ci: ci, n: uint32(n), at: len(b.offs), len: len(offs)})
	b.offs = append(b.offs, offs...)
	return nil
}

func (a *asyncSink) capture(ci int, info *CaptureInfo) error {
	a.cur.event(sinkEvent{kind: evCapture, ci: ci, info: info})
	return nil
}
