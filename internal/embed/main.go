// Command embed is the program of docs/library.md: what an outside Go
// module writes to index a capture, list its HTTP flows, extract one and
// reassemble its stream. It is a module of its own, so that it uses
// only what the pcapflow package exports; CI builds and runs it.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/pcapflow/pcapflow"
)

func main() {
	ctx := context.Background()
	capture, idx := os.Args[1], os.Args[2]
	if _, err := pcapflow.Index(ctx, idx, []string{capture}, nil); err != nil {
		log.Fatal(err)
	}
	a, err := pcapflow.Open(idx)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	for f, err := range a.Flows(ctx, pcapflow.Query{Filter: "tcp and port 80"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(f.ID, f.Key.SrcAddr(), f.Key.SrcPort, "->", f.Key.DstAddr(), f.Key.DstPort, f.Packets, f.State)
	}
	n, err := a.CreateOutput("flow1.pcap", true, func(w io.Writer) (int64, error) {
		return a.Extract(ctx, w, []uint64{1}, nil)
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "packets in flow1.pcap")
	if _, err := a.WriteStreams(ctx, os.Stdout, []uint64{1}, nil); err != nil {
		log.Fatal(err)
	}
}
