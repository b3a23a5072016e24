package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/pcapflow/pcapflow"
)

const streamsUsage = `usage: pcapflow streams [-i INDEX] [CAPTURE...] (-w FILE | -O DIR) [options] [FILTER...]

Reassemble the TCP streams (and UDP datagram payloads) of the flows that
match FILTER, one direction per flow. From an index only those flows'
packets are read. The policy is in docs/reassembly.md. Each gap (bytes
that never came) is named on stderr: flow, offset, bytes.

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
  --from T, --to T    only packets in this time window (see extract -h)
  --max-buffer SIZE   out-of-order bytes held per direction (default 4M)
  --max-memory SIZE   out-of-order bytes held in all (default 256M)
  --max-open N        files open at once with -O (default 256, or half the
                      open-file limit when that is lower)
  --max-gaps N        gaps named on stderr (default 20; the total is always given)
  --force             overwrite existing output
  -i INDEX            answer from this index
`

type streamFlags struct {
	gaps, overlap, maxBuf, maxMem, from, to string
	maxGaps                                 int
}

func (sf *streamFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&sf.gaps, "gaps", "skip", "")
	fs.StringVar(&sf.overlap, "overlap", "first", "")
	fs.StringVar(&sf.maxBuf, "max-buffer", "4M", "")
	fs.StringVar(&sf.maxMem, "max-memory", "256M", "")
	fs.StringVar(&sf.from, "from", "", "")
	fs.StringVar(&sf.to, "to", "", "")
	fs.IntVar(&sf.maxGaps, "max-gaps", 20, "")
}

// options are the reassembly options the flags ask for; gaps are named
// on stderr, up to --max-gaps of them.
func (sf *streamFlags) options(e *env, cf *commonFlags) (*pcapflow.StreamOptions, *int, error) {
	o := &pcapflow.StreamOptions{}
	var err error
	if o.Gaps, err = pcapflow.ParseGapPolicy(sf.gaps); err != nil {
		return nil, nil, usagef("--gaps: %v", err)
	}
	if o.Overlap, err = pcapflow.ParseOverlapPolicy(sf.overlap); err != nil {
		return nil, nil, usagef("--overlap: %v", err)
	}
	b, ok := parseSize(sf.maxBuf)
	if !ok || b == 0 {
		return nil, nil, usagef("--max-buffer %q: want a size such as 4M", sf.maxBuf)
	}
	m, ok := parseSize(sf.maxMem)
	if !ok || m == 0 {
		return nil, nil, usagef("--max-memory %q: want a size such as 256M", sf.maxMem)
	}
	o.MaxBuffer, o.MaxMemory = int(b), int(m)
	if o.Window, err = window(sf.from, sf.to, cf); err != nil {
		return nil, nil, err
	}
	named := new(int)
	o.OnGap = func(id, off, n uint64) {
		*named++
		if *named <= sf.maxGaps {
			fmt.Fprintf(e.stderr, "pcapflow: gap: flow %d: %d %s missing at stream offset %d\n", id, n, plural(n, "byte", "bytes"), off)
		} else if *named == sf.maxGaps+1 {
			fmt.Fprintf(e.stderr, "pcapflow: gap: more gaps not named (--max-gaps %d); the summary counts them all\n", sf.maxGaps)
		}
	}
	return o, named, nil
}

func runStreams(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var sf streamFlags
	var out, dir string
	var header, force bool
	var maxOpen int
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	fs.StringVar(&out, "w", "", "")
	fs.StringVar(&dir, "O", "", "")
	fs.BoolVar(&header, "tcpheader", false, "")
	fs.IntVar(&maxOpen, "max-open", 0, "")
	fs.BoolVar(&force, "force", false, "")
	sf.register(fs)
	src, expr, err := prepare(ctx, e, fs, &cf, args, true)
	if err != nil {
		return err
	}
	if (out == "") == (dir == "") {
		return usagef("streams needs exactly one of -w FILE and -O DIR")
	}
	if cf.remote != nil {
		if dir != "" {
			return usagef("streams -i URL writes one file: use -w FILE (with --tcpheader to tell the streams apart)")
		}
		return cf.remote.streams(ctx, e, out, header, force, exprString(expr))
	}
	defer src.Close()
	o, _, err := sf.options(e, &cf)
	if err != nil {
		return err
	}
	o.Header = header
	if dir != "" {
		if err := src.CheckOutput(dir + "/x"); err != nil {
			return usagef("refusing to write streams into %s: it is or is inside an index", dir)
		}
	} else if err := checkOutput(src, out); err != nil {
		return err
	}
	ids, err := selectIDs(ctx, e, src, expr)
	if err != nil {
		return err
	}
	var res pcapflow.StreamsResult
	if dir != "" {
		res, err = src.StreamsToDir(ctx, dir, ids, o, &pcapflow.DirOptions{Force: force, MaxOpen: maxOpen})
		if errors.Is(err, pcapflow.ErrOutputExists) {
			return usagef("%s exists and is not empty; use --force to write into it", dir)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "wrote %d stream %s to %s", res.Files, pluralInt(res.Files, "file", "files"), dir)
	} else {
		if len(ids) > 1 && !header {
			e.warn(fmt.Errorf("%d streams go into one file without --tcpheader: their bytes interleave in the order they were reassembled", len(ids)))
		}
		_, err := writeOutput(src, out, force, e.stdout, func(w io.Writer) (int64, error) {
			var err error
			res, err = src.WriteStreams(ctx, w, ids, o)
			return res.Bytes, err
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "wrote %d %s to %s", res.Streams, pluralInt(res.Streams, "stream", "streams"), out)
	}
	t := res.Totals
	fmt.Fprintf(e.stderr, ": %d bytes; %d %s (%d bytes missing), %d bytes retransmitted (%d conflicting)",
		t.Delivered, t.Gaps, pluralInt(t.Gaps, "gap", "gaps"), t.MissingBytes, t.RetransBytes, t.ConflictBytes)
	if res.BufferHits > 0 {
		fmt.Fprintf(e.stderr, "; buffer limits forced %d gaps", res.BufferHits)
	}
	if res.Skipped > 0 {
		fmt.Fprintf(e.stderr, "; %d matching %s neither TCP nor UDP", res.Skipped, pluralInt(res.Skipped, "flow is", "flows are"))
	}
	fmt.Fprintln(e.stderr)
	return finish(src, nil)
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
