package pcapflow

import (
	"bufio"
	"context"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/pcapflow/pcapflow/index"
	"github.com/pcapflow/pcapflow/pcapio"
)

// Format is a capture file format.
type Format = pcapio.Format

// The output formats.
const (
	FormatPcap   = pcapio.FormatPcap
	FormatPcapNG = pcapio.FormatPcapNG
)

// ExtractOptions configure Extract.
type ExtractOptions struct {
	// Format of the output; 0 chooses from the captures: pcap, or
	// pcapng when a capture is pcapng or their link types differ.
	Format Format
	// Window keeps only the packets inside it (the flows are chosen by
	// the filter; the window trims their packets).
	Window Window
}

// OutputFormat is the format Extract writes by default for the archive.
func (a *Archive) OutputFormat() Format { return pcapio.OutputFormat(index.Layouts(a.r)) }

// Extract writes the packets of the flows ids to w as a capture: each
// record byte for byte as it is in its capture, once even when it
// belongs to several of the flows (a tunnel's frame and the flow it
// carries), in capture order, captures merged by packet time. It returns
// the number of packets written. Only the flows' records are read.
func (a *Archive) Extract(ctx context.Context, w io.Writer, ids []uint64, o *ExtractOptions) (int64, error) {
	if o == nil {
		o = &ExtractOptions{}
	}
	if err := a.needPackets(); err != nil {
		return 0, err
	}
	layouts := index.Layouts(a.r)
	f := o.Format
	if f == 0 {
		f = pcapio.OutputFormat(layouts)
	}
	return index.Extract(ctx, a.r, ids, pcapio.NewCopier(w, f, layouts), o.Window.index())
}

func writeAndClose(f *os.File, write func(io.Writer) (int64, error)) (int64, error) {
	bw := bufio.NewWriterSize(f, 1<<20)
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
