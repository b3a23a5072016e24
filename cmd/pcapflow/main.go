// Command pcapflow turns packet captures into an indexed flow database:
// list flows, count them, extract their packets or reassembled streams,
// from a one-time index or straight from the capture.
//
// See `pcapflow help` and docs/ for the commands.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/pcapflow/pcapflow"
)

// Exit statuses.
const (
	exitOK    = 0
	exitInput = 1 // input or I/O error
	exitUsage = 2 // usage or filter syntax error
)

// usageError marks errors that exit with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// env is what a command runs with; tests replace its fields.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	progress       bool               // forced progress display
	warned         int                // warnings printed
	compatPr       *pcapflow.Progress // set while compat reads a capture
	gc             *gcHold            // the collector held off at start (main only)
}

func (e *env) warn(err error) {
	e.warned++
	fmt.Fprintf(e.stderr, "pcapflow: warning: %v\n", err)
}

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"index", indexUsage, runIndex},
		{"flows", flowsUsage, runFlows},
		{"count", countUsage, runCount},
		{"explain", explainUsage, runExplain},
		{"extract", extractUsage, runExtract},
		{"streams", streamsUsage, runStreams},
		{"follow", followUsage, runFollow},
		{"serve", serveUsage, runServe},
		{"export", exportUsage, runExport},
		{"compress", compressUsage, runCompress},
		{"version", versionUsage, runVersion},
		{"compat", compatUsage, runCompat},
	}
}

const mainUsage = `pcapflow: index packet captures by flow; list, count and extract flows.

usage:
  pcapflow index   [-i INDEX] CAPTURE...                      build or extend an index
  pcapflow flows   [-i INDEX] [CAPTURE...] [options] [FILTER...]
  pcapflow count   [-i INDEX] [CAPTURE...] [FILTER...]        flows, packets, bytes that match
  pcapflow explain [-i INDEX] [CAPTURE...] FILTER...          the parsed filter and the plan
  pcapflow extract [-i INDEX] [CAPTURE...] -w OUT [FILTER...] packets of matching flows
  pcapflow streams [-i INDEX] [CAPTURE...] (-w FILE | -O DIR) [FILTER...]
  pcapflow follow  [-i INDEX] [CAPTURE...] FILTER...          a conversation, as Wireshark follows it
  pcapflow serve   -i INDEX [--watch DIR] [--listen ADDR]     the archive over HTTP and in a browser
  pcapflow export  [-i INDEX] [CAPTURE...] -o DIR [FILTER...] conversations as Parquet, Zeek's columns
  pcapflow compress CAPTURE -o OUT.zst                        seekable zstd: random access to a compressed capture
  pcapflow compat  [pcap_flow options] CAPTURE                the pcap_flow command line
  pcapflow version                                            version and build

Run 'pcapflow COMMAND -h' for a command's options. A capture with a fresh
index beside it (CAPTURE.pfidx/) is answered from the index; otherwise it
is scanned. FILTER is every remaining argument, as in tcpdump:
  pcapflow flows x.pcap port 80 and not host 10.0.0.1
`

func main() {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, gc: holdGC(os.Getenv)}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	// For performance work: PCAPFLOW_CPUPROFILE=file writes a CPU profile.
	if p := os.Getenv("PCAPFLOW_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
		}
	}
	// PCAPFLOW_MEMPROFILE=file writes a heap profile taken when the heap
	// in use was largest (sampled every 100 ms); like any heap profile it
	// shows what the last collection before that moment found live.
	// PCAPFLOW_TRACE=file writes an execution trace (go tool trace), for
	// seeing which stage of a pipeline waits on which.
	if p := os.Getenv("PCAPFLOW_TRACE"); p != "" {
		if f, err := os.Create(p); err == nil {
			trace.Start(f)
		}
	}
	stopHeap := func() {}
	if p := os.Getenv("PCAPFLOW_MEMPROFILE"); p != "" {
		stopHeap = peakHeapProfile(p)
	}
	code := run(ctx, e, os.Args)
	stopHeap()
	pprof.StopCPUProfile()
	trace.Stop()
	stop()
	os.Exit(code)
}

// peakHeapProfile writes to path, when stopped, the heap profile taken
// when the heap in use was largest.
func peakHeapProfile(path string) (stop func()) {
	var best bytes.Buffer
	var peak uint64
	stopTick := every(100*time.Millisecond, func(float64) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapInuse > peak {
			peak = m.HeapInuse
			best.Reset()
			pprof.Lookup("heap").WriteTo(&best, 0)
		}
	})
	return func() {
		stopTick()
		os.WriteFile(path, best.Bytes(), 0o644)
	}
}

// run executes a command line and returns the exit status.
func run(ctx context.Context, e *env, argv []string) int {
	prog := filepath.Base(argv[0])
	args := argv[1:]
	var cmd *command
	if prog == "pcap_flow" || prog == "pcap_flows" {
		cmd = &commands[len(commands)-1]
	} else {
		if len(args) > 0 && args[0] == "--version" {
			args[0] = "version"
		}
		if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(e.stdout, mainUsage)
			if len(args) == 0 {
				return exitUsage
			}
			return exitOK
		}
		for i := range commands {
			if commands[i].name == args[0] {
				cmd = &commands[i]
			}
		}
		if cmd == nil {
			fmt.Fprintf(e.stderr, "pcapflow: unknown command %q\n\n%s", args[0], mainUsage)
			return exitUsage
		}
		args = args[1:]
	}
	err := cmd.run(ctx, e, args)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(e.stdout, cmd.usage)
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "pcapflow %s: %v\n", cmd.name, err)
		if !strings.Contains(ue.msg, "\n") {
			fmt.Fprintf(e.stderr, "run 'pcapflow %s -h' for usage\n", cmd.name)
		}
		return exitUsage
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(e.stderr, "pcapflow %s: interrupted\n", cmd.name)
		return exitInput
	}
	fmt.Fprintf(e.stderr, "pcapflow %s: %v%s\n", cmd.name, err, advice(err))
	return exitInput
}

// advice says what to do about an error the libraries report without
// knowing about commands.
func advice(err error) string {
	var se *pcapflow.StaleError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("; rebuild it: rm -r %s && pcapflow index -i %s CAPTURE...", se.Index, se.Index)
	case errors.Is(err, pcapflow.ErrIncomplete):
		return "; re-run 'pcapflow index' with the same arguments to finish it"
	case errors.Is(err, pcapflow.ErrSchema):
		return "; remove the index directory and run 'pcapflow index' again"
	case errors.Is(err, pcapflow.ErrOlder):
		return "; an index grows in time order: rebuild it from all its captures (rm -r INDEX && pcapflow index -i INDEX CAPTURES...)"
	case errors.Is(err, pcapflow.ErrStore):
		return "; nothing of this run was committed and the index answers as before it (check the disk: space, errors, a read-only mount)"
	case errors.Is(err, pcapflow.ErrReadOnly):
		return "; it can still be queried; to add captures, index into a writable copy (cp -r) or another -i DIR"
	case errors.Is(err, pcapflow.ErrSettings):
		return "; give the same flow options (such as --idle-timeout or --close-timeout) as when the index was made, or build another index"
	}
	return ""
}

// parseArgs parses flags that may appear anywhere before "--" and returns
// the remaining arguments in order. Arguments after "--" are returned as
// they are, after a "--" marker, so that callers can tell where the
// capture list ended.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var rest, tail []string
	for i, a := range args {
		if a == "--" {
			tail = append([]string{"--"}, args[i+1:]...)
			args = args[:i]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	return append(rest, tail...), nil
}

// splitCaptures separates leading capture arguments (existing files or
// directories, or "-") from the filter words that follow. "--" ends the
// capture list explicitly. A reserved filter word is never a capture,
// even if a file has that name (write ./flow for a file called flow).
func splitCaptures(args []string) (captures []string, filter string) {
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return captures, strings.Join(args[i+1:], " ")
		}
		if a == "-" {
			captures = append(captures, a)
			continue
		}
		if pcapflow.IsKeyword(a) {
			break
		}
		if _, err := os.Stat(a); err != nil {
			break
		}
		captures = append(captures, a)
	}
	rest := args[i:]
	for j, a := range rest {
		if a == "--" { // a "--" after filter words separates nothing
			rest = append(rest[:j:j], rest[j+1:]...)
			break
		}
	}
	return captures, strings.Join(rest, " ")
}
