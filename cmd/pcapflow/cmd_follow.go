package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/pcapflow/pcapflow"
)

const followUsage = `usage: pcapflow follow [-i INDEX] [CAPTURE...] [options] FILTER...

Print a TCP (or UDP) conversation as Wireshark's Follow TCP Stream shows
it: both directions in the order their bytes were reassembled, which is
capture order. Each run of bytes is marked by its side: on a terminal in
colour (A, the side seen first, red; B blue), otherwise with a prefix:
"> " for A's bytes, "< " for B's. Printable text is shown as text; other
bytes as \xNN, a backslash as \\, and a run that does not end in a
newline ends with a lone \ (so the bytes can be read back exactly).
Bytes that never came are a line [N bytes missing]. If FILTER selects
several conversations, the first is followed (--all: every one).

options:
  --hex               a hexdump (offset, hex, text) instead of text
  --all               follow every conversation FILTER selects
  --color auto|always|never   colour instead of prefixes (auto: on a terminal)
  --from T, --to T    only packets in this time window (see extract -h)
  --gaps, --overlap, --max-buffer, --max-memory   as for streams
  -i INDEX            answer from this index
`

func runFollow(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var sf streamFlags
	var hex, all bool
	var color string
	fs := flag.NewFlagSet("follow", flag.ContinueOnError)
	fs.BoolVar(&hex, "hex", false, "")
	fs.BoolVar(&all, "all", false, "")
	fs.StringVar(&color, "color", "auto", "")
	sf.register(fs)
	src, expr, err := prepare(ctx, e, fs, &cf, args, true)
	if err != nil {
		return err
	}
	if src != nil {
		defer src.Close()
	}
	if expr == nil {
		return usagef("follow needs a FILTER that selects a conversation, such as 'flow 3' or 'host 10.0.0.1 and port 80'")
	}
	o, _, err := sf.options(e, &cf)
	if err != nil {
		return err
	}
	o.OnGap = nil // gaps are shown in the conversation itself
	useColor := false
	switch color {
	case "always":
		useColor = true
	case "never":
	case "auto":
		if f, ok := e.stdout.(*os.File); ok && os.Getenv("NO_COLOR") == "" {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				useColor = true
			}
		}
	default:
		return usagef("--color %q: want auto, always or never", color)
	}
	w := bufio.NewWriterSize(e.stdout, 64<<10)
	fw := &followWriter{w: w, color: useColor, hex: hex}
	if cf.remote != nil {
		return cf.remote.follow(ctx, e, fw, all, expr.String())
	}
	var convs []pcapflow.Conversation
	for c, err := range src.Conversations(ctx, pcapflow.Query{Expr: expr}) {
		if err != nil {
			return err
		}
		if p := c.A.Key.Proto; p != 6 && p != 17 {
			continue
		}
		convs = append(convs, *c)
	}
	if len(convs) == 0 {
		return fmt.Errorf("no TCP or UDP conversation matches %q", expr.String())
	}
	if len(convs) > 1 && !all {
		e.warn(fmt.Errorf("%d conversations match %q; following the first (conversation %d); --all follows every one", len(convs), expr.String(), convs[0].ID))
		convs = convs[:1]
	}
	for i := range convs {
		if err := fw.follow(ctx, src, &convs[i], o); err != nil {
			w.Flush()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return finish(src, nil)
}

type followWriter struct {
	w          *bufio.Writer
	color      bool
	hex        bool
	side       int // the side of the open text line: 0 none, 1 A, 2 B
	sent, lost [2]uint64
}

const (
	colorA     = "\033[31m"
	colorB     = "\033[34m"
	colorReset = "\033[0m"
)

// followHeader names a conversation.
type followHeader struct {
	proto string
	conv  uint64
	flows []uint64
	a, b  string // endpoints
}

func (fw *followWriter) follow(ctx context.Context, src *pcapflow.Archive, c *pcapflow.Conversation, o *pcapflow.StreamOptions) error {
	k := &c.A.Key
	endpoint := func(a string, p uint16) string {
		if contains(a, ':') {
			return "[" + a + "]:" + strconv.Itoa(int(p))
		}
		return a + ":" + strconv.Itoa(int(p))
	}
	hdr := followHeader{proto: pcapflow.ProtoName(k.Proto), conv: c.ID, flows: []uint64{c.A.ID},
		a: endpoint(k.SrcAddr().String(), k.SrcPort), b: endpoint(k.DstAddr().String(), k.DstPort)}
	if c.B != nil {
		hdr.flows = append(hdr.flows, c.B.ID)
	}
	fw.begin(hdr)
	_, chunks := src.Follow(ctx, c.A.ID, o)
	for ch, err := range chunks {
		if err != nil {
			return err
		}
		if ch.Missing > 0 {
			fw.missing(ch.FromB, ch.Missing)
		} else {
			fw.data(ch.FromB, ch.Offset, ch.Data)
		}
	}
	fw.end()
	return nil
}

const rule = "==================================================================="

func (fw *followWriter) begin(h followHeader) {
	fw.sent, fw.lost = [2]uint64{}, [2]uint64{}
	fmt.Fprintln(fw.w, rule)
	fmt.Fprintf(fw.w, "Follow: %s conversation %d (flows %d", h.proto, h.conv, h.flows[0])
	if len(h.flows) > 1 {
		fmt.Fprintf(fw.w, ", %d", h.flows[1])
	}
	fmt.Fprintln(fw.w, ")")
	fmt.Fprintf(fw.w, "A (>): %s\n", h.a)
	fmt.Fprintf(fw.w, "B (<): %s\n", h.b)
	fmt.Fprintln(fw.w, rule)
}

func side(fromB bool) int {
	if fromB {
		return 1
	}
	return 0
}

func (fw *followWriter) missing(fromB bool, n uint64) {
	s := side(fromB)
	fw.lost[s] += n
	fw.endLine()
	fw.mark(s)
	fmt.Fprintf(fw.w, "[%d bytes missing]", n)
	fw.unmark()
	fw.w.WriteByte('\n')
}

func (fw *followWriter) data(fromB bool, off uint64, b []byte) {
	s := side(fromB)
	fw.sent[s] += uint64(len(b))
	if fw.hex {
		fw.hexdump(s, off-1, b)
	} else {
		fw.text(s, b)
	}
}

func (fw *followWriter) end() {
	fw.endLine()
	fmt.Fprintln(fw.w, rule)
	fmt.Fprintf(fw.w, "A sent %d bytes (%d missing); B sent %d bytes (%d missing)\n", fw.sent[0], fw.lost[0], fw.sent[1], fw.lost[1])
}

func contains(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

func (fw *followWriter) mark(side int) {
	switch {
	case fw.color && side == 0:
		fw.w.WriteString(colorA)
	case fw.color:
		fw.w.WriteString(colorB)
	case side == 0:
		fw.w.WriteString("> ")
	default:
		fw.w.WriteString("< ")
	}
}

func (fw *followWriter) unmark() {
	if fw.color {
		fw.w.WriteString(colorReset)
	}
}

// endLine ends a text line left open by a run without a final newline:
// with a lone backslash, which says the newline is not data.
func (fw *followWriter) endLine() {
	if fw.side != 0 {
		fw.w.WriteString("\\")
		fw.unmark()
		fw.w.WriteByte('\n')
		fw.side = 0
	}
}

// text prints a run of one side's bytes, line by line.
func (fw *followWriter) text(side int, b []byte) {
	if fw.side != 0 && fw.side != side+1 {
		fw.endLine()
	}
	for _, c := range b {
		if fw.side == 0 {
			fw.mark(side)
			fw.side = side + 1
		}
		switch {
		case c == '\n':
			fw.unmark()
			fw.w.WriteByte('\n')
			fw.side = 0
		case c == '\\':
			fw.w.WriteString(`\\`)
		case c == '\t' || c >= 0x20 && c < 0x7f:
			fw.w.WriteByte(c)
		default:
			fmt.Fprintf(fw.w, `\x%02x`, c)
		}
	}
}

// hexdump prints a run as hexdump -C does, offsets in the side's stream.
func (fw *followWriter) hexdump(side int, off uint64, b []byte) {
	for len(b) > 0 {
		n := min(16, len(b))
		fw.mark(side)
		fmt.Fprintf(fw.w, "%08x  ", off)
		for i := 0; i < 16; i++ {
			if i < n {
				fmt.Fprintf(fw.w, "%02x ", b[i])
			} else {
				fw.w.WriteString("   ")
			}
			if i == 7 {
				fw.w.WriteByte(' ')
			}
		}
		fw.w.WriteString(" |")
		for _, c := range b[:n] {
			if c >= 0x20 && c < 0x7f {
				fw.w.WriteByte(c)
			} else {
				fw.w.WriteByte('.')
			}
		}
		fw.w.WriteString("|")
		fw.unmark()
		fw.w.WriteByte('\n')
		off += uint64(n)
		b = b[n:]
	}
}
