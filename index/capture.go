package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
	Packets     uint64 // records read
	Bytes       uint64 // sum of wire lengths
	NonIP       uint64 // frames that decoded to no IP flow
	Flows       uint64 // flows that started in this capture
	First, Last int64  // time of the first packet and the latest one, ns (0, 0 without packets)
	// Warning is the problem that ended reading early, if any: what was
	// read before it is indexed, and every later query reports it again.
	Warning string
	// Damaged says the Warning is damage (the capture was read up to it),
	// not a capture cut off in its last record.
	Damaged bool   `json:",omitempty"`
	Gen     uint32 // the index run that added the capture

	firstID uint64 // while reading: the table's next ID when it began
}

// source is a capture to read: a file, or standard input ("-").
type source struct {
	path  string
	first int64 // time of the first packet, for ordering
	empty bool  // no packet at all
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
	id, err = identity(f, size)
	return size, mtime, id, err
}

// identity is the identity of f's first size bytes: Identify's of the
// file as it was when it had that size, so that a capture that grew
// since (still being written) can be told from one that changed.
func identity(f io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", size)
	buf := make([]byte, identityBytes)
	n, err := f.ReadAt(buf[:min(int64(len(buf)), size)], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	h.Write(buf[:n])
	if size > identityBytes {
		tail := max(size-identityBytes, identityBytes)
		n, err = f.ReadAt(buf[:size-tail], tail)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		h.Write(buf[:n])
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// Discovery is what Discover found.
type Discovery struct {
	Captures []string // capture files, in the order given (directories expanded)
	Skipped  []string // files in directories that are not captures
}

// Discover expands the directories among paths into the captures they
// hold, recognised by their content (a pcap or pcapng magic number,
// possibly inside gzip or zstd), not by their names: tcpdump's rotated
// x.pcap1, x.pcap2... are captures. Directories are not searched
// recursively. Files named directly are kept whatever they hold (reading
// them reports what is wrong), as is "-".
func Discover(paths []string) (*Discovery, error) {
	d := &Discovery{}
	for _, p := range paths {
		if p == "-" {
			d.Captures = append(d.Captures, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return d, err
		}
		if !st.IsDir() {
			d.Captures = append(d.Captures, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return d, err
		}
		for _, ent := range ents {
			full := filepath.Join(p, ent.Name())
			if !ent.Type().IsRegular() {
				if ent.Type()&os.ModeSymlink != 0 {
					if st, err := os.Stat(full); err == nil && st.Mode().IsRegular() {
						goto file
					}
				}
				continue // subdirectories (indexes among them), devices, sockets
			}
		file:
			if IsCapture(full) {
				d.Captures = append(d.Captures, full)
			} else {
				d.Skipped = append(d.Skipped, full)
			}
		}
	}
	return d, nil
}

// IsCapture reports whether a file begins like a capture: a pcap or
// pcapng magic number, or gzip or zstd data that decompresses to one.
func IsCapture(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := pcapio.NewReader(io.LimitReader(f, 1<<20), path)
	if err != nil {
		return false
	}
	r.Close()
	return true
}

// order reads the first packet of each capture and sorts them by its
// time; ties (and captures without packets) go by name in natural
// order, so x.pcap2 comes before x.pcap10. A capture that cannot be
// opened as one is left out, with its error in errs. stdin is read for
// "-"; the reader returned replays what peeking consumed.
func order(paths []string, stdin io.Reader) (srcs []source, in io.Reader, errs []error) {
	for _, p := range paths {
		src := source{path: p}
		if p == "-" {
			// Standard input can be read once: what peeking at its first
			// packet consumed is read again from a copy.
			var buf bytes.Buffer
			var err error
			src.first, src.empty, err = firstTime(io.TeeReader(stdin, &buf), p)
			stdin = io.MultiReader(&buf, stdin)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			srcs = append(srcs, src)
			continue
		}
		f, err := os.Open(p)
		if err == nil {
			src.first, src.empty, err = firstTime(f, p)
			f.Close()
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		srcs = append(srcs, src)
	}
	slices.SortStableFunc(srcs, func(a, b source) int {
		switch {
		case a.empty != b.empty:
			if a.empty {
				return 1
			}
			return -1
		case !a.empty && a.first != b.first:
			if a.first < b.first {
				return -1
			}
			return 1
		}
		return naturalCompare(filepath.Base(a.path), filepath.Base(b.path))
	})
	return srcs, stdin, errs
}

// firstTime reads the time of a capture's first packet; empty is true
// when it has none (or is damaged before the first, which reading it
// reports). err is set when it is no capture at all.
func firstTime(r io.Reader, name string) (first int64, empty bool, err error) {
	pr, err := pcapio.NewReader(r, name)
	if err != nil {
		return 0, true, err
	}
	defer pr.Close()
	var rec pcapio.Record
	if err := pr.Next(&rec); err != nil {
		return 0, true, nil
	}
	return rec.Timestamp, false, nil
}

// naturalCompare orders names with their digit runs compared as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			x, y := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(x) != len(y) {
				return len(x) - len(y)
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
