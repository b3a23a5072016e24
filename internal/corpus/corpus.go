// Package corpus gives tests access to the shared capture corpus
// (../shared/corpus beside the repository, or $PCAPFLOW_CORPUS) and to the
// oracle files tshark and tcpflow produced for it.
package corpus

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Dir returns the corpus folder, or skips the test when it is absent.
func Dir(t testing.TB) string {
	t.Helper()
	d := Find()
	if d == "" {
		t.Skip("corpus not found: neither $PCAPFLOW_CORPUS nor ../shared/corpus beside the repository exists")
	}
	return d
}

// Find returns the corpus folder or "".
func Find() string {
	if d := os.Getenv("PCAPFLOW_CORPUS"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
		return ""
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	d := filepath.Join(root, "..", "shared", "corpus")
	if st, err := os.Stat(filepath.Join(d, "MANIFEST.tsv")); err == nil && !st.IsDir() {
		return d
	}
	return ""
}

// RepoRoot returns the repository root (for testdata/).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Entry is one row of MANIFEST.tsv.
type Entry struct {
	File      string
	Bytes     int64
	LinkTypes []string
	Format    string // e.g. "pcap,us,little-endian"
	Packets   int
	Tags      []string
}

// Has reports whether the entry carries a tag.
func (e Entry) Has(tag string) bool {
	for _, t := range e.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// Manifest parses MANIFEST.tsv.
func Manifest(t testing.TB) []Entry {
	t.Helper()
	dir := Dir(t)
	rows := ReadTSV(t, filepath.Join(dir, "MANIFEST.tsv"))
	var out []Entry
	for _, r := range rows {
		n, _ := strconv.Atoi(r["packets"])
		b, _ := strconv.ParseInt(r["bytes"], 10, 64)
		out = append(out, Entry{
			File: r["file"], Bytes: b, LinkTypes: strings.Split(r["link_types"], ","),
			Format: r["format"], Packets: n, Tags: strings.Split(r["exercises"], ","),
		})
	}
	return out
}

// ReadTSV reads a tab-separated file with a header row into maps.
func ReadTSV(t testing.TB, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var hdr []string
	var out []map[string]string
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if hdr == nil {
			hdr = cols
			continue
		}
		m := make(map[string]string, len(hdr))
		for i, h := range hdr {
			if i < len(cols) {
				m[h] = cols[i]
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
