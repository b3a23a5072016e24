package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
)

// source is an opened index or a finished scan.
type source struct {
	r         index.Reader
	fromIndex string // index directory, "" for a scan
	scanErr   error  // the error that ended a scan early; results before it stand
	names     []string
}

func (s *source) captureName(i int) string {
	if i < len(s.names) {
		return s.names[i]
	}
	return "?"
}

func (s *source) Close() { s.r.Close() }

// commonFlags are the options every query command takes.
type commonFlags struct {
	indexDir    string
	idleTimeout time.Duration
	idleSet     bool // --idle-timeout was given
	progress    bool
	scan        bool
}

// noteSet records which of the flags were given.
func (c *commonFlags) noteSet(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "idle-timeout" {
			c.idleSet = true
		}
	})
}

// settings are the flow semantics the flags ask for.
func (c *commonFlags) settings() index.Settings {
	var s index.Settings
	switch {
	case c.idleTimeout == 0:
		s.IdleTimeout = -1 // never
	default:
		s.IdleTimeout = c.idleTimeout
	}
	return s
}

func (c *commonFlags) register(fs interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	BoolVar(*bool, string, bool, string)
}) {
	fs.StringVar(&c.indexDir, "i", "", "index directory to answer from")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", flow.DefaultIdleTimeout, "a connection silent this long (capture time) ends; 0: never")
	fs.BoolVar(&c.progress, "progress", false, "show progress on stderr even when it is not a terminal")
	fs.BoolVar(&c.scan, "scan", false, "read the captures even when an index is beside them")
}

// expandCaptures replaces directory arguments by the captures in them,
// recognised by content (not recursive); files that are not captures are
// passed over with a warning saying how many.
func expandCaptures(e *env, args []string) ([]string, error) {
	d, err := index.Discover(args)
	if err != nil {
		return nil, err
	}
	if n := len(d.Skipped); n > 0 && e != nil {
		e.warn(fmt.Errorf("passed over %d %s that %s not captures (first: %s)", n, plural(uint64(n), "file", "files"), plural(uint64(n), "is", "are"), d.Skipped[0]))
	}
	if len(d.Captures) == 0 {
		return nil, fmt.Errorf("%s: no captures there", strings.Join(args, ", "))
	}
	return d.Captures, nil
}

// openSource opens the index to answer from, or scans the captures.
func openSource(ctx context.Context, e *env, cf *commonFlags, captures []string, keepPackets bool) (*source, error) {
	if len(captures) > 0 {
		var err error
		if captures, err = expandCaptures(e, captures); err != nil {
			return nil, err
		}
	}
	dir := cf.indexDir
	if dir == "" && len(captures) == 1 && captures[0] != "-" && !cf.idleSet && !cf.scan {
		if st, err := os.Stat(index.DefaultPath(captures[0])); err == nil && st.IsDir() {
			dir = index.DefaultPath(captures[0])
		}
	}
	if dir != "" {
		r, err := index.Open(dir)
		if err != nil {
			return nil, err
		}
		if err := r.Check(); err != nil {
			r.Close()
			return nil, err
		}
		s := &source{r: r, fromIndex: dir}
		for _, c := range r.Captures() {
			s.names = append(s.names, c.Name)
		}
		if len(captures) > 0 && cf.indexDir != "" {
			rr, err := index.Restrict(ctx, r, captures)
			if err != nil {
				r.Close()
				return nil, err
			}
			s.r = rr
		}
		return s, nil
	}
	if len(captures) == 0 {
		return nil, usagef("no capture given (and no -i INDEX)")
	}
	nstdin := 0
	for _, c := range captures {
		if c == "-" {
			nstdin++
		}
	}
	if nstdin > 1 {
		return nil, usagef("standard input (-) can be read only once")
	}
	opts := index.ScanOptions{KeepPackets: keepPackets}
	opts.Settings = cf.settings()
	opts.Warn = e.warn
	opts.Stdin = e.stdin
	stop := e.startProgress(cf, &opts.Progress)
	m, err := index.Scan(ctx, captures, opts)
	stop()
	if m == nil || (err != nil && len(m.Captures()) == 0) {
		return nil, err
	}
	s := &source{r: m, scanErr: err}
	for _, c := range m.Captures() {
		s.names = append(s.names, c.Name)
	}
	return s, nil
}

// startProgress shows a progress line on stderr about twice a second when
// stderr is a terminal or --progress was given. It returns a function
// that ends the display.
func (e *env) startProgress(cf *commonFlags, pp **index.Progress) func() {
	if e.compatPr != nil { // compat mode prints pcap_flow's own progress line
		*pp = e.compatPr
		return func() {}
	}
	show := cf.progress || e.progress
	if !show && e.stderr == os.Stderr {
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			show = true
		}
	}
	if !show {
		return func() {}
	}
	p := &index.Progress{}
	*pp = p
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(e.stderr, "\r\033[K")
				return
			case <-t.C:
				name, _ := p.Capture.Load().(string)
				b, total := p.Bytes.Load(), p.Total.Load()
				pct := ""
				if total > 0 {
					pct = fmt.Sprintf(" %5.1f%%", 100*float64(b)/float64(total))
				}
				rate := float64(b) / time.Since(start).Seconds() / 1e6
				fmt.Fprintf(e.stderr, "\r\033[K[%s%s] %.2f Mpkts %d flows %.0f MB/s", name, pct,
					float64(p.Packets.Load())/1e6, p.Flows.Load(), rate)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
