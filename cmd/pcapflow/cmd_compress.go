package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pcapflow/pcapflow"
	"github.com/pcapflow/pcapflow/pcapio"
)

const compressUsage = `usage: pcapflow compress CAPTURE -o OUT.zst [--frame SIZE] [--force]

Compress a capture (pcap or pcapng, plain or gzip/zstd-compressed) into
the zstd seekable format: independent frames of about --frame bytes
(default 1M) cut at record boundaries, and a seek table in a skippable
frame. Any zstd reads it ('zstd -d' restores the capture byte for
byte); pcapflow extracts, reassembles and follows from it by
decompressing only the frames that hold the wanted records. It runs on
all cores.
`

func runCompress(ctx context.Context, e *env, args []string) error {
	var out, frame string
	var force bool
	fs := flag.NewFlagSet("compress", flag.ContinueOnError)
	fs.StringVar(&out, "o", "", "")
	fs.StringVar(&frame, "frame", "1M", "")
	fs.BoolVar(&force, "force", false, "")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || out == "" {
		return usagef("compress takes one CAPTURE and -o OUT.zst")
	}
	size, ok := parseSize(frame)
	if !ok || size < 4<<10 || size > 1<<30 {
		return usagef("--frame %q: want a size from 4K to 1G", frame)
	}
	in := rest[0]
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	var st pcapio.SeekableStats
	_, err = pcapflow.WriteFile(out, []string{in}, force, func(w io.Writer) (int64, error) {
		var err error
		st, err = pcapio.WriteSeekable(w, f, in, pcapio.SeekableOptions{FrameSize: int(size)})
		return st.Out, err
	})
	if err != nil {
		return outputError(out, err)
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(e.stderr, "compressed %s (%d records, %.1f MB) to %s: %.1f MB in %d frames (%.1f%%) in %.2fs (%.0f MB/s)\n",
		in, st.Records, float64(st.In)/1e6, out, float64(st.Out)/1e6, st.Frames, 100*float64(st.Out)/float64(max(st.In, 1)),
		el, float64(st.In)/1e6/el)
	return nil
}
