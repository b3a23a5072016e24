package pcapflow_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pcapflow/pcapflow"
)

// Open the index beside a capture if there is one, else scan it, and
// list its flows.
func ExampleOpenOrScan() {
	ctx := context.Background()
	a, err := pcapflow.OpenOrScan(ctx, []string{"testdata/basic.pcap"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	for f, err := range a.Flows(ctx, pcapflow.Query{Filter: "tcp", Limit: 4}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		k := &f.Key
		fmt.Printf("flow %d: %s:%d -> %s:%d, %d packets, %s\n", f.ID, k.SrcAddr(), k.SrcPort, k.DstAddr(), k.DstPort, f.Packets, f.State)
	}
	// Output:
	// flow 1: 10.0.0.1:40000 -> 10.0.0.2:80, 7 packets, SF
	// flow 2: 10.0.0.2:80 -> 10.0.0.1:40000, 6 packets, SF
	// flow 7: 2001:db8::1:50000 -> 2001:db8::2:443, 6 packets, SF
	// flow 8: 2001:db8::2:443 -> 2001:db8::1:50000, 3 packets, SF
}

// Filter with tcpdump's spellings and count; a filter that does not
// parse says where.
func ExampleArchive_Count() {
	ctx := context.Background()
	a, err := pcapflow.Scan(ctx, []string{"testdata/basic.pcap"}, &pcapflow.ScanOptions{FlowsOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	c, err := a.Count(ctx, pcapflow.Query{Filter: "tcp port 80 or 25"})
	fmt.Printf("%d flows, %d packets, %d bytes (%v)\n", c.Flows, c.Packets, c.Bytes, err)
	_, err = a.Count(ctx, pcapflow.Query{Filter: "host 10.0.0.300"})
	fmt.Println(err)
	// Output:
	// 6 flows, 29 packets, 4848 bytes (<nil>)
	// filter error at column 6: invalid IP address "10.0.0.300"
}

// Index a capture, then extract one conversation's packets into a
// buffer: a pcap that any tool reads.
func ExampleArchive_Extract() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	idx := filepath.Join(dir, "basic.pfidx")
	if _, err := pcapflow.Index(ctx, idx, []string{"testdata/basic.pcap"}, nil); err != nil {
		fmt.Println(err)
		return
	}
	a, err := pcapflow.Open(idx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	ids, _ := a.IDs(ctx, pcapflow.Query{Filter: "flow 1 or flow 2"})
	var buf bytes.Buffer
	n, err := a.Extract(ctx, &buf, ids, nil)
	fmt.Printf("%d packets, %d bytes of %s (%v)\n", n, buf.Len(), a.OutputFormat(), err)
	// Output:
	// 13 packets, 4072 bytes of pcap (<nil>)
}

// The stream of a flow inside a VXLAN tunnel: the depth comes from the
// flow, nothing to set.
func ExampleArchive_WriteStreams() {
	ctx := context.Background()
	a, err := pcapflow.Scan(ctx, []string{"testdata/tunnels.pcap"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	ids, _ := a.IDs(ctx, pcapflow.Query{Filter: "tunnel vxlan and vni 100 and tcp dst port 80"})
	var out strings.Builder
	res, err := a.WriteStreams(ctx, &out, ids, nil)
	fmt.Printf("%d stream, %d bytes, %d gaps (%v)\n", res.Streams, res.Totals.Delivered, res.Totals.Gaps, err)
	fmt.Printf("%q\n", out.String())
	// Output:
	// 1 stream, 15 bytes, 0 gaps (<nil>)
	// "vni-100 request"
}

// Follow a conversation as Wireshark does: both sides in order.
func ExampleArchive_Follow() {
	ctx := context.Background()
	a, err := pcapflow.Scan(ctx, []string{"testdata/basic.pcap"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	conv, chunks := a.Follow(ctx, 14, nil)
	fmt.Printf("conversation %d: flows %d and %d\n", conv.ID, conv.A.ID, conv.B.ID)
	for c, err := range chunks {
		if err != nil {
			fmt.Println(err)
			return
		}
		side := "A"
		if c.FromB {
			side = "B"
		}
		fmt.Printf("%s %q\n", side, c.Data)
	}
	// Output:
	// conversation 14: flows 14 and 15
	// B "220 mail ready, connection 1\r\n"
	// A "QUIT\r\n"
}

// List prints what 'pcapflow flows' prints: here the two TCP
// conversations with the most packets, as CSV.
func ExampleArchive_List() {
	ctx := context.Background()
	a, err := pcapflow.Scan(ctx, []string{"testdata/basic.pcap"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	q := pcapflow.Query{Filter: "tcp", Sort: pcapflow.SortPackets, Reverse: true, Limit: 2}
	if err := a.List(ctx, os.Stdout, q, true, pcapflow.ListCSV, a.ListOptions()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// conv,a,b,aport,bport,proto,vlan,tunnel,a_to_b_packets,a_to_b_bytes,b_to_a_packets,b_to_a_bytes,first,last,duration,flows
	// 1,10.0.0.1,10.0.0.2,40000,80,tcp,,,7,457,6,3383,2024-05-01T10:00:00.000000000Z,2024-05-01T10:00:00.022002000Z,0.022002000,"1,2"
	// 7,2001:db8::1,2001:db8::2,50000,443,tcp,,,6,961,3,1622,2024-05-01T10:00:00.014001000Z,2024-05-01T10:00:00.040004000Z,0.026003000,"7,8"
}
