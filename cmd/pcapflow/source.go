package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pcapflow/pcapflow"
)

// commonFlags are the options every query command takes.
type commonFlags struct {
	indexDir    string
	idleTimeout time.Duration
	timeoutSet  bool // --idle-timeout or --close-timeout was given
	closeAfter  time.Duration
	progress    bool
	scan        bool
	tz          string
	tokenFile   string
	remote      *remote  // -i URL: the server answers (set by prepare)
	opening     *opening // -i DIR being opened (set by prepare)
}

// noteSet records which of the flags were given.
func (c *commonFlags) noteSet(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "idle-timeout" || f.Name == "close-timeout" {
			c.timeoutSet = true
		}
	})
}

// settings are the flow semantics the flags ask for.
func (c *commonFlags) settings() pcapflow.Settings {
	var s pcapflow.Settings
	if c.idleTimeout == 0 {
		s.IdleTimeout = -1 // never
	} else {
		s.IdleTimeout = c.idleTimeout
	}
	s.CloseTimeout = c.closeAfter
	return s
}

// positiveDuration is a flag.Value for a duration that must be above 0.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("want a duration above 0, such as 5s")
	}
	*d = positiveDuration(v)
	return nil
}

// location is the time zone of the text listings: --tz, else $TZ, else
// UTC (captures come from many places; UTC is what they agree on).
func (c *commonFlags) location() (*time.Location, error) {
	name := c.tz
	if name == "" {
		name = os.Getenv("TZ")
	}
	if name == "" {
		return time.UTC, nil
	}
	if name == "local" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, usagef("--tz %q: %v (want a zone name such as Europe/Berlin, UTC or local)", name, err)
	}
	return loc, nil
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.indexDir, "i", "", "index directory to answer from")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", pcapflow.DefaultIdleTimeout, "a connection silent this long (capture time) ends; 0: never")
	c.closeAfter = pcapflow.DefaultCloseTimeout
	fs.Var((*positiveDuration)(&c.closeAfter), "close-timeout", "a closed TCP connection silent this long ends")
	fs.BoolVar(&c.progress, "progress", false, "show progress on stderr even when it is not a terminal")
	fs.BoolVar(&c.scan, "scan", false, "read the captures even when an index is beside them")
	fs.StringVar(&c.tz, "tz", "", "time zone of the text listing (default $TZ, else UTC)")
	fs.StringVar(&c.tokenFile, "token-file", "", "with -i URL: the server's token ($PCAPFLOW_TOKEN otherwise)")
}

// expandCaptures replaces directory arguments by the captures in them,
// recognised by content (not recursive); files that are not captures are
// passed over with a warning saying how many.
func expandCaptures(e *env, args []string) ([]string, error) {
	caps, skipped, err := pcapflow.Discover(args)
	if err != nil {
		return nil, err
	}
	e.warnSkipped(skipped)
	if len(caps) == 0 {
		// Never the whole archive (with -i) nor "no capture given" for
		// captures that were given: a directory that holds none.
		return nil, fmt.Errorf("no captures in %s", strings.Join(args, " "))
	}
	return caps, nil
}

// warnSkipped counts the files of directories given that are not
// captures, when there are any.
func (e *env) warnSkipped(skipped []string) {
	if n := len(skipped); n > 0 {
		e.warn(fmt.Errorf("passed over %d %s that %s not a capture (such as %s)", n, pluralInt(n, "file", "files"), pluralInt(n, "is", "are"), skipped[0]))
	}
}

// openSource opens what a query command answers from: -i INDEX, the
// index beside a single capture, or a scan of the captures.
func openSource(ctx context.Context, e *env, cf *commonFlags, captures []string, needPackets bool) (*pcapflow.Archive, error) {
	if len(captures) > 0 {
		var err error
		if captures, err = expandCaptures(e, captures); err != nil {
			return nil, err
		}
	}
	dir := cf.indexDir
	if dir == "" && len(captures) == 1 && captures[0] != "-" && !cf.timeoutSet && !cf.scan {
		if st, err := os.Stat(pcapflow.DefaultIndex(captures[0])); err == nil && st.IsDir() {
			dir = pcapflow.DefaultIndex(captures[0])
		}
	}
	if dir != "" {
		var a *pcapflow.Archive
		var err error
		if cf.opening != nil && dir == cf.opening.dir {
			a, err = cf.opening.take()
		} else {
			a, err = openIndex(dir)
		}
		if err != nil {
			return nil, err
		}
		for _, w := range a.Warnings() {
			e.warn(errors.New(w))
		}
		if g := a.Grown(); len(g) > 0 {
			e.warn(fmt.Errorf("an index cannot add to a capture it holds: --scan reads %s whole; rebuild the index once %s complete (rm -r %s && pcapflow index ...)",
				pluralInt(len(g), "it", "them"), pluralInt(len(g), "it is", "they are"), dir))
		}
		var ce pcapflow.CaptureErrors
		if errors.As(a.Err(), &ce) {
			for _, x := range ce {
				e.warn(x)
			}
		}
		if a.Interrupted() {
			e.warn(fmt.Errorf("the last index run on %s was cut short; it answers what the run before committed", dir))
		}
		if len(captures) > 0 && cf.indexDir != "" {
			r, err := a.Restrict(ctx, captures)
			if err != nil {
				a.Close()
				return nil, err
			}
			return r, nil
		}
		return a, nil
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
	opts := &pcapflow.ScanOptions{Settings: cf.settings(), Warn: e.warn, Stdin: e.stdin, FlowsOnly: !needPackets}
	stop := e.startProgress(cf, &opts.Progress)
	a, err := pcapflow.Scan(ctx, captures, opts)
	stop()
	if a == nil {
		return nil, err
	}
	// Every capture that failed, named with its offset as the scan goes
	// on with the rest; the command still fails at the end (finish).
	var ce pcapflow.CaptureErrors
	if errors.As(err, &ce) && len(ce) > 1 {
		for _, x := range ce[1:] {
			e.warn(x)
		}
	}
	return a, nil
}

// opening is an index being opened in a goroutine of its own.
type opening struct {
	dir   string
	done  chan struct{}
	a     *pcapflow.Archive
	err   error
	taken bool
}

// startOpen opens the index dir (openIndex) in a goroutine.
func startOpen(dir string) *opening {
	o := &opening{dir: dir, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		o.a, o.err = openIndex(dir)
	}()
	return o
}

// take returns the opened index; it is then the caller's to close.
func (o *opening) take() (*pcapflow.Archive, error) {
	<-o.done
	o.taken = true
	return o.a, o.err
}

// discard waits for the open and closes what it opened, unless it was
// taken: nothing is left open (nor its lock held) when a command stops
// early. A nil o is none.
func (o *opening) discard() {
	if o == nil {
		return
	}
	<-o.done
	if !o.taken && o.err == nil {
		o.a.Close()
	}
	o.taken = true
}

// openIndex opens -i DIR, saying what DIR is when it is no index.
func openIndex(dir string) (*pcapflow.Archive, error) {
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return nil, fmt.Errorf("index %s: %w", dir, err)
	case !st.IsDir():
		return nil, usagef("-i %s: that is a file, not an index directory (an index is made by 'pcapflow index')", dir)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		return nil, usagef("-i %s: the directory is empty, not an index (make one: pcapflow index -i %s CAPTURE...)", dir, dir)
	}
	return pcapflow.Open(dir)
}

// startProgress shows a progress line on stderr about twice a second when
// stderr is a terminal or --progress was given. It returns a function
// that ends the display.
func (e *env) startProgress(cf *commonFlags, pp **pcapflow.Progress) func() {
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
	p := &pcapflow.Progress{}
	*pp = p
	stop := every(500*time.Millisecond, func(el float64) {
		name, _ := p.Capture.Load().(string)
		b, total := p.Bytes.Load(), p.Total.Load()
		pct := ""
		if total > 0 {
			pct = fmt.Sprintf(" %5.1f%%", 100*float64(b)/float64(total))
		}
		fmt.Fprintf(e.stderr, "\r\033[K[%s%s] %.2f Mpkts %d flows %.0f MB/s", name, pct,
			float64(p.Packets.Load())/1e6, p.Flows.Load(), float64(b)/el/1e6)
	})
	return func() { stop(); fmt.Fprint(e.stderr, "\r\033[K") }
}

// every calls tick with the seconds since the start, in a goroutine of
// its own, each period until stop is called; stop returns once the last
// tick has returned, so that nothing prints after it.
func every(period time.Duration, tick func(elapsed float64)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				tick(time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func pluralInt(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
