package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/pcapio"
	"github.com/pcapflow/pcapflow/query"
	"github.com/pcapflow/pcapflow/reasm"
)

const streamsUsage = `usage: pcapflow streams [-i INDEX] [CAPTURE...] (-w FILE | -O DIR) [options] [FILTER...]

Reassemble the TCP streams (and UDP datagram payloads) of the flows that
match FILTER, one direction per flow. From an index only those flows'
packets are read. The policy is in docs/reassembly.md.

options:
  -O DIR              one file per flow: <id>-<proto>-<src>.<sport>-<dst>.<dport>
  -w FILE             all streams into one file ("-" for standard output), in
                      the order they are reassembled; use --tcpheader to tell
                      them apart
  --tcpheader         before each reassembled segment, a 12-byte header: u64
                      time (ns), u16 length, u16 stream ID (flow ID & 0xffff)
  --gaps skip|zero|stop   missing bytes: skip them (default), fill with zeros,
                      or end the stream
  --overlap first|last    which copy of bytes received twice is kept (default first)
  --max-buffer SIZE   out-of-order bytes held per direction (default 4M)
  --max-memory SIZE   out-of-order bytes held in all (default 256M)
  --max-open N        files open at once with -O (default 256, or half the
                      open-file limit when that is lower)
  --force             overwrite existing output
  -i INDEX            answer from this index
`

func runStreams(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var out, dir, gaps, overlap, maxBuf, maxMem string
	var header, force bool
	var maxOpen int
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	fs.StringVar(&out, "w", "", "")
	fs.StringVar(&dir, "O", "", "")
	fs.BoolVar(&header, "tcpheader", false, "")
	fs.StringVar(&gaps, "gaps", "skip", "")
	fs.StringVar(&overlap, "overlap", "first", "")
	fs.StringVar(&maxBuf, "max-buffer", "4M", "")
	fs.StringVar(&maxMem, "max-memory", "256M", "")
	fs.IntVar(&maxOpen, "max-open", 0, "")
	fs.BoolVar(&force, "force", false, "")
	src, expr, err := prepare(ctx, e, fs, &cf, args, true)
	if err != nil {
		return err
	}
	defer src.Close()
	if (out == "") == (dir == "") {
		return usagef("streams needs exactly one of -w FILE and -O DIR")
	}
	pol, err := streamPolicy(gaps, overlap, maxBuf, maxMem)
	if err != nil {
		return err
	}
	// The selected TCP and UDP flows, with what names their files.
	// Names are only made for -O: formatting 1.6 M of them for -w cost a
	// tenth of the run.
	var ids []uint64
	var names map[uint64]string
	if dir != "" {
		names = map[uint64]string{}
	}
	depths := map[uint64]uint8{} // flows inside tunnels only
	skipped := 0
	err = query.Select(ctx, src.r, expr, func(f *flow.Flow) error {
		k := &f.Key
		if k.Proto != 6 && k.Proto != 17 {
			skipped++
			return nil
		}
		ids = append(ids, f.ID)
		if f.Depth > 0 {
			depths[f.ID] = f.Depth
		}
		if names != nil {
			names[f.ID] = reasm.StreamName(f.ID, flow.ProtoName(k.Proto), k.SrcAddr().String(), k.SrcPort, k.DstAddr().String(), k.DstPort)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(ids) == 0 && skipped == 0 {
		e.warn(noMatch(expr))
	}
	var totals reasm.Stats
	done := func(id uint64, st reasm.Stats) {
		totals.Delivered += st.Delivered
		totals.MissingBytes += st.MissingBytes
		totals.RetransBytes += st.RetransBytes
		totals.ConflictBytes += st.ConflictBytes
		totals.Gaps += st.Gaps
		totals.BufferHits += st.BufferHits
	}
	setDepths := func(a *reasm.Assembler) {
		a.Expect(ids)
		for id, d := range depths {
			a.SetDepth(id, d)
		}
	}
	if dir != "" {
		n, err := streamsToDir(ctx, src, ids, names, dir, header, force, maxOpen, pol, done, setDepths)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "wrote %d stream files to %s", n, dir)
	} else {
		if len(ids) > 1 && !header {
			e.warn(fmt.Errorf("%d streams go into one file without --tcpheader: their bytes interleave in the order they were reassembled", len(ids)))
		}
		_, err := writeOutput(out, force, e.stdout, src.inputs(), func(w io.Writer) (int64, error) {
			sw := &reasm.StreamWriter{W: w, Header: header}
			a := reasm.NewAssembler(pol, func(id uint64, _ uint8) reasm.Sink { return sw.Sink(id) }, done)
			setDepths(a)
			err := index.Records(ctx, src.r, ids, func(_ int, id uint64, rec *pcapio.Record) error { return a.Record(id, rec) })
			if cerr := a.Close(); err == nil {
				err = cerr
			}
			return sw.Bytes, err
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "wrote %d streams to %s", len(ids), out)
	}
	fmt.Fprintf(e.stderr, ": %d bytes; %d gaps (%d bytes missing), %d bytes retransmitted (%d conflicting)",
		totals.Delivered, totals.Gaps, totals.MissingBytes, totals.RetransBytes, totals.ConflictBytes)
	if totals.BufferHits > 0 {
		fmt.Fprintf(e.stderr, "; buffer limits forced %d gaps", totals.BufferHits)
	}
	if skipped > 0 {
		fmt.Fprintf(e.stderr, "; %d matching flows are neither TCP nor UDP", skipped)
	}
	fmt.Fprintln(e.stderr)
	return src.finish(nil)
}

func streamPolicy(gaps, overlap, maxBuf, maxMem string) (reasm.Policy, error) {
	var pol reasm.Policy
	var err error
	if pol.Gaps, err = reasm.ParseGapPolicy(gaps); err != nil {
		return pol, usagef("--gaps: %v", err)
	}
	if pol.Overlap, err = reasm.ParseOverlapPolicy(overlap); err != nil {
		return pol, usagef("--overlap: %v", err)
	}
	b, ok := parseSize(maxBuf)
	if !ok || b == 0 {
		return pol, usagef("--max-buffer %q: want a size such as 4M", maxBuf)
	}
	m, ok := parseSize(maxMem)
	if !ok || m == 0 {
		return pol, usagef("--max-memory %q: want a size such as 256M", maxMem)
	}
	pol.MaxBuffer = int(b)
	pol.Budget = &reasm.Budget{Max: int(m)}
	return pol, nil
}

// streamsToDir writes one file per flow into dir.
func streamsToDir(ctx context.Context, src *source, ids []uint64, names map[uint64]string, dir string, header, force bool, maxOpen int, pol reasm.Policy, done func(uint64, reasm.Stats), setup func(*reasm.Assembler)) (int, error) {
	if err := refuseOutput(filepath.Join(dir, "x"), src.inputs()); err != nil {
		return 0, usagef("refusing to write streams into %s: it is or is inside an index", dir)
	}
	ents, err := os.ReadDir(dir)
	if err == nil && len(ents) > 0 && !force {
		return 0, usagef("%s exists and is not empty; use --force to write into it", dir)
	}
	w := &reasm.DirWriter{Dir: dir, MaxOpen: maxOpen, Header: header}
	// The streams are written into a hidden staging directory beside DIR
	// and moved into place only when the run succeeds: after a failure
	// (a full disk, a damaged capture) nothing partial is left and an
	// existing DIR is as it was.
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return 0, err
	}
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(dir))+".partial-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(staging) // gone once moved; otherwise what failed
	if err := os.Chmod(staging, 0o755); err != nil {
		return 0, err
	}
	w.Dir, w.Direct = staging, true
	files := map[uint64]*reasm.FileStream{}
	var finishErr error
	finish := func(id uint64) {
		if fs := files[id]; fs != nil {
			if err := fs.Finish(); err != nil && finishErr == nil {
				finishErr = err
			}
			delete(files, id)
		}
	}
	a := reasm.NewAssembler(pol, func(id uint64, _ uint8) reasm.Sink {
		fs := w.Stream(names[id], id)
		files[id] = fs
		return fs
	}, done)
	a.Ended = finish
	setup(a)
	err = index.Records(ctx, src.r, ids, func(_ int, id uint64, rec *pcapio.Record) error { return a.Record(id, rec) })
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = finishErr
	}
	if err != nil {
		w.Abort()
		return 0, err
	}
	return w.Files, publish(staging, dir, len(ents) == 0)
}

// publish moves a finished staging directory to dir: renamed, when dir is
// new or empty; file by file into it otherwise (--force; files of the
// same name are replaced).
func publish(staging, dir string, empty bool) error {
	if empty {
		os.Remove(dir) // empty, if it exists
		return os.Rename(staging, dir)
	}
	ents, err := os.ReadDir(staging)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(staging, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// parseSize reads a byte count with an optional K, M or G (powers of 1024) suffix.
func parseSize(s string) (uint64, bool) {
	mult := uint64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	var v uint64
	if _, err := fmt.Sscan(s, &v); err != nil {
		return 0, false
	}
	return v * mult, true
}
