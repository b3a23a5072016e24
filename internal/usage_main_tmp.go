//go:build ignore

package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/pcapflow/pcapflow/index"
)

func main() {
	s, err := index.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	u, _ := s.Usage()
	r, _ := s.RawSizes()
	var keys []string
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var tot, traw uint64
	for _, k := range keys {
		fmt.Printf("%s disk %10d  keys %8d raw %10d\n", k, u[k], r[k][0], r[k][1])
		tot += u[k]
		traw += r[k][1]
	}
	fmt.Println("total", tot, "raw", traw)
	fmt.Println(s.ListSizes())
}
