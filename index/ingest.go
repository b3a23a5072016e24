package index

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/pcapio"
)

// CaptureInfo describes one capture of an index or a scan.
type CaptureInfo struct {
	Name        string // base name, printed as a flow's "capture"
	Path        string // absolute path ("-" for standard input)
	RelPath     string // path relative to the index directory, to find a moved archive
	Size        int64
	ModTime     int64  // ns since the epoch
	Identity    string // hash of size, head and tail; see Identify
	Compression string // "", "gzip" or "zstd"
	Layout      pcapio.Layout
	FirstID     uint64 // ID of the capture's first flow
	Flows       uint64
	Packets     uint64
	Bytes       uint64 // sum of wire lengths
	NonIP       uint64 // frames that decoded to no IP flow
	Warning     string // the problem that ended reading early, if any
}

// Progress is updated while captures are read, for a progress display.
// Its fields are safe to read from another goroutine.
type Progress struct {
	Capture atomic.Value // string: name of the capture being read
	Bytes   atomic.Int64 // bytes of the current capture read
	Total   atomic.Int64 // size of the current capture, -1 if unknown
	Packets atomic.Int64 // packets read in all captures
	Flows   atomic.Int64 // flows found in all captures
}

// Options configure reading captures.
type Options struct {
	IdleTimeout time.Duration
	// Warn receives problems that do not stop the work: a capture cut
	// short, skipped records, undecodable link types. Nil discards them.
	Warn     func(error)
	Progress *Progress
	// Stdin is read for the capture "-" (os.Stdin when nil).
	Stdin io.Reader
	// Decode tunes the decoder (VXLAN ports, no decapsulation).
	Decode *pcapio.DecodeOptions
	// MaxPackets, when positive, stops reading each capture after that
	// many records (pcap_flow's --packet-max).
	MaxPackets int64
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

// packetSink receives the records of flows as they are read: flow is the
// index in the capture's table.
type packetSink func(flow int32, off int64, length int32)

// OpenCapture opens a capture file, or standard input for "-".
func OpenCapture(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(path)
}

// identityBytes is how much of each end of a capture Identify hashes.
const identityBytes = 64 << 10

// Identify hashes a capture's size, first and last 64 KiB. A capture that
// is appended to, truncated, rewritten or replaced gets a different
// identity (short of an edit confined to its middle with the same size,
// which the modification time then catches).
func Identify(f *os.File) (size, mtime int64, id string, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, "", err
	}
	size, mtime = fi.Size(), fi.ModTime().UnixNano()
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", size)
	buf := make([]byte, identityBytes)
	n, err := f.ReadAt(buf[:min(int64(len(buf)), size)], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, "", err
	}
	h.Write(buf[:n])
	if size > identityBytes {
		tail := max(size-identityBytes, identityBytes)
		n, err = f.ReadAt(buf[:size-tail], tail)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, "", err
		}
		h.Write(buf[:n])
	}
	return size, mtime, hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// decodedBatch carries decoded packets from the reading goroutine to the
// flow table.
type decodedBatch struct {
	n      int
	offset int64
	ps     [256][MaxTunnelDepth + 1]pcapio.Packet // the packet, then what its tunnels carry
	depth  [256]uint8
	meta   [256]pcapio.Record // without Data and Raw
}

// MaxTunnelDepth bounds how many tunnels inside each other are opened.
const MaxTunnelDepth = 3

// readCapture reads one capture through the decoder into a new flow
// table whose IDs start at firstID. It returns the table (finished) even
// when reading stopped at an error, so that the flows before the damage
// are kept; the error then names the file and offset.
func readCapture(ctx context.Context, path string, src io.Reader, capIdx int, firstID uint64, opts *Options, sink packetSink) (*CaptureInfo, *flow.Table, error) {
	info := &CaptureInfo{Name: filepath.Base(path), Path: path, Size: -1, FirstID: firstID}
	if path == "-" {
		info.Name = "-"
	} else if abs, err := filepath.Abs(path); err == nil {
		info.Path = abs
	}
	var rc io.ReadCloser
	if src == nil && path == "-" {
		src = opts.stdin()
	}
	if src != nil {
		rc = io.NopCloser(src)
	} else {
		var err error
		if rc, err = OpenCapture(path); err != nil {
			return info, nil, err
		}
	}
	defer rc.Close()
	var err error
	if f, ok := rc.(*os.File); ok && path != "-" {
		info.Size, info.ModTime, info.Identity, err = Identify(f)
		if err != nil {
			return info, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	pr := opts.Progress
	if pr != nil {
		pr.Capture.Store(info.Name)
		pr.Bytes.Store(0)
		pr.Total.Store(info.Size)
	}
	r, err := pcapio.NewReader(rc, path)
	if err != nil {
		return info, nil, err
	}
	defer r.Close()
	info.Compression = r.Compression()
	r.OnWarning = opts.Warn
	topts := flow.Options{FirstID: firstID, Capture: capIdx, IdleTimeout: opts.IdleTimeout}
	if sink != nil {
		topts.OnAttach = func(fi int32, h flow.Held) { sink(fi, h.Offset, h.Length) }
	}
	t := flow.NewTable(topts)
	// Reading and decoding run in their own goroutine, a batch ahead of
	// the flow table: the two overlap on two cores.
	batches := make(chan *decodedBatch, 4)
	free := make(chan *decodedBatch, 6)
	for i := 0; i < cap(free); i++ {
		free <- &decodedBatch{}
	}
	var (
		badLinks map[pcapio.LinkType]int
		readErr  error
		endErr   error // the error that ended reading
	)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(batches)
		var rec pcapio.Record
		var read int64
		for {
			var b *decodedBatch
			select {
			case b = <-free:
			case <-stop:
				return
			}
			b.n = 0
			for b.n < len(b.ps) {
				if opts.MaxPackets > 0 && read >= opts.MaxPackets {
					break
				}
				read++
				err := r.Next(&rec)
				if err != nil {
					if err != io.EOF {
						endErr = err
					}
					break
				}
				chain := &b.ps[b.n]
				p := &chain[0]
				p.DecodeWith(rec.LinkType, rec.Data, opts.Decode)
				depth := 0
				data := rec.Data
				for depth < MaxTunnelDepth && chain[depth].Tunnel != 0 {
					outer := &chain[depth]
					data = data[outer.InnerOffset:]
					chain[depth+1].DecodeWith(outer.InnerLink, data, opts.Decode)
					depth++
				}
				b.depth[b.n] = uint8(depth)
				if p.Problem == pcapio.ProblemUnsupportedLink {
					if badLinks == nil {
						badLinks = map[pcapio.LinkType]int{}
					}
					badLinks[rec.LinkType]++
				}
				m := &b.meta[b.n]
				*m = rec
				m.Data, m.Raw = nil, nil
				b.n++
			}
			b.offset = r.Offset()
			last := b.n < len(b.ps)
			select {
			case batches <- b:
			case <-stop:
				return
			}
			if last {
				return
			}
		}
	}()
	for b := range batches {
		for i := 0; i < b.n; i++ {
			m := &b.meta[i]
			info.Packets++
			info.Bytes += uint64(m.OrigLen)
			chain := &b.ps[i]
			fi := t.Add(m, &chain[0])
			if fi >= 0 && sink != nil {
				sink(fi, m.Offset, int32(m.Length))
			}
			for d := 1; d <= int(b.depth[i]); d++ {
				// A tunnel: the same record also belongs to the flow it carries.
				if fi = t.AddInner(m, &chain[d], fi, &chain[d-1]); fi >= 0 && sink != nil {
					sink(fi, m.Offset, int32(m.Length))
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return info, nil, err
		}
		if pr != nil {
			pr.Bytes.Store(b.offset)
			pr.Packets.Add(int64(b.n))
			pr.Flows.Store(int64(t.NextID() - 1))
		}
		free <- b
	}
	// The reader goroutine has finished (batches is closed): its results
	// are safe to read.
	if endErr != nil {
		if pcapio.IsWarning(endErr) {
			opts.warn(endErr)
		} else {
			readErr = endErr
		}
		info.Warning = endErr.Error()
	}
	if pr != nil {
		pr.Bytes.Store(r.Offset())
	}
	t.Finish()
	st := t.Stats()
	for _, c := range st.Problems {
		info.NonIP += c
	}
	links := make([]int, 0, len(badLinks))
	for l := range badLinks {
		links = append(links, int(l))
	}
	sort.Ints(links)
	for _, l := range links {
		opts.warn(fmt.Errorf("%s: %d packets of unsupported link type %v were counted but not decoded", path, badLinks[pcapio.LinkType(l)], pcapio.LinkType(l)))
	}
	info.Flows = uint64(t.Len())
	info.Layout = *r.Layout()
	return info, t, readErr
}
