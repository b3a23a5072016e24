package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/pcapio"
	"github.com/pcapflow/pcapflow/query"
)

const extractUsage = `usage: pcapflow extract [-i INDEX] [CAPTURE...] -w OUT [FILTER...]

Write the packets of the flows that match FILTER to OUT, byte for byte as
they are in the capture, in capture order (merged by timestamp across
captures). From an index only those packets are read. OUT is pcap, or
pcapng when a capture is pcapng or link types differ; -w - writes to
standard output.

options:
  -w OUT            output file ("-" for standard output)
  --format pcap|pcapng   force the output format
  --force           overwrite OUT if it exists
  -i INDEX          answer from this index
`

func runExtract(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var out, format string
	var force bool
	fs := flag.NewFlagSet("extract", flag.ContinueOnError)
	fs.StringVar(&out, "w", "", "")
	fs.StringVar(&format, "format", "", "")
	fs.BoolVar(&force, "force", false, "")
	src, expr, err := prepare(ctx, e, fs, &cf, args, true)
	if err != nil {
		return err
	}
	defer src.Close()
	if out == "" {
		return usagef("extract needs -w OUT")
	}
	ids, err := query.SelectIDs(ctx, src.r, expr)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		e.warn(noMatch(expr))
	}
	layouts := index.Layouts(src.r)
	of := pcapio.OutputFormat(layouts)
	switch format {
	case "":
	case "pcap":
		of = pcapio.FormatPcap
	case "pcapng":
		of = pcapio.FormatPcapNG
	default:
		return usagef("--format %q: want pcap or pcapng", format)
	}
	n, err := writeOutput(out, force, e.stdout, src.inputs(), func(w io.Writer) (int64, error) {
		return index.Extract(ctx, src.r, ids, pcapio.NewCopier(w, of, layouts))
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "extracted %d packets of %d flows to %s (%s)\n", n, len(ids), out, of)
	return src.finish(nil)
}

// writeOutput writes a file through a temporary name and renames it into
// place on success, so a failed run never leaves a truncated file that
// looks complete. An existing file is kept unless force is set.
func writeOutput(path string, force bool, stdout io.Writer, inputs []string, write func(io.Writer) (int64, error)) (int64, error) {
	if err := refuseOutput(path, inputs); err != nil {
		return 0, err
	}
	if path == "-" {
		bw := newBufWriter(stdout)
		n, err := write(bw)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		return n, err
	}
	var perm os.FileMode
	if fi, err := os.Stat(path); err != nil {
		perm = newFilePerm()
	} else {
		perm = fi.Mode().Perm() // a replaced file keeps its permissions
		switch {
		case fi.IsDir():
			return 0, usagef("%s is a directory", path)
		case !fi.Mode().IsRegular():
			// A device or a pipe (/dev/null, a FIFO a reader waits on):
			// written in place, as tcpdump -w does; renaming a file over
			// it would replace the device itself.
			return writeInPlace(path, write)
		case !force:
			return 0, usagef("%s exists; use --force to overwrite it", path)
		}
		// A symbolic link names the file to replace, not itself.
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		// Name the output, not the temporary file it is written under.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = &os.PathError{Op: "create", Path: path, Err: pe.Err}
		}
		return 0, err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file private (0600); the output is an
	// ordinary file, readable as any file the user creates.
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return 0, err
	}
	n, err := writeAndClose(tmp, write)
	if err != nil {
		return n, err
	}
	return n, os.Rename(tmp.Name(), path)
}

func writeInPlace(path string, write func(io.Writer) (int64, error)) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	return writeAndClose(f, write)
}

// writeAndClose runs write on a buffer over f, then flushes and closes f;
// the first error wins.
func writeAndClose(f *os.File, write func(io.Writer) (int64, error)) (int64, error) {
	bw := newBufWriter(f)
	n, err := write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// newFilePerm is the permission a newly created file gets: 0666 less the
// umask (read from /proc, as setting it to read it races with other
// goroutines creating files), or 0644 where that is unknown.
func newFilePerm() os.FileMode {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return 0o666 &^ os.FileMode(m)
				}
			}
		}
	}
	return 0o644
}

// noMatch is the warning for a selection of no flows: the output is
// still written (an empty capture, as tcpdump writes), but a mistyped
// flow ID or address should not pass unnoticed.
func noMatch(expr query.Expr) error {
	if expr == nil {
		return errors.New("the capture has no flows")
	}
	return fmt.Errorf("no flow matches %q", expr.String())
}
