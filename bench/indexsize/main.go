// Command indexsize prints what each kind of key of an index takes on
// disk and uncompressed, for docs/index.md's accounting:
//
//	go run ./bench/indexsize INDEX
package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/pcapflow/pcapflow/index"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: indexsize INDEX")
		os.Exit(2)
	}
	s, err := index.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer s.Close()
	disk, err := s.Usage()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	raw, err := s.RawSizes()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var tags []string
	for t := range raw {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	var total uint64
	fmt.Printf("%-4s %12s %10s %12s\n", "key", "on disk", "keys", "raw bytes")
	for _, t := range tags {
		fmt.Printf("%-4s %12d %10d %12d\n", t, disk[t], raw[t][0], raw[t][1])
		total += disk[t]
	}
	fmt.Printf("%-4s %12d\n", "all", total)
	fmt.Println("\nattribute lists (A) by field, raw:")
	lists := s.ListSizes()
	var fields []string
	for f := range lists {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		fmt.Printf("  %-12s %8d keys %10d bytes\n", f, lists[f][0], lists[f][1])
	}
}
