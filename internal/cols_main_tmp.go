//go:build ignore

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pcapflow/pcapflow/index"
)

func main() {
	_, err := index.Build(context.Background(), os.Args[1], os.Args[2:], index.Options{})
	n := float64(index.ColSizes[11])
	names := []string{"flags", "capture", "peer", "key", "outer", "mac", "counts", "times", "tcp", "seq", "header"}
	for i, nm := range names {
		fmt.Printf("%-8s %8d %5.2f B/flow\n", nm, index.ColSizes[i], float64(index.ColSizes[i])/n)
	}
	fmt.Println(err, n)
}
