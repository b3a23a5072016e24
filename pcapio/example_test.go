package pcapio_test

import (
	"fmt"
	"os"

	"github.com/pcapflow/pcapflow/pcapio"
)

// Read a capture's records and decode each to its flow key fields.
func ExampleReader() {
	f, err := os.Open("../testdata/basic.pcap")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	r, err := pcapio.NewReader(f, "basic.pcap")
	if err != nil {
		fmt.Println(err)
		return
	}
	var rec pcapio.Record
	var p pcapio.Packet
	for i := 0; i < 3 && r.Next(&rec) == nil; i++ {
		p.Decode(rec.LinkType, rec.Data)
		fmt.Printf("record %d at offset %d: %d bytes, IPv%d proto %d ports %d->%d\n",
			rec.Index, rec.Offset, rec.CapLen, p.IPVersion, p.Proto, p.SrcPort, p.DstPort)
	}
	// Output:
	// record 0 at offset 24: 60 bytes, IPv4 proto 6 ports 40000->80
	// record 1 at offset 100: 60 bytes, IPv4 proto 6 ports 80->40000
	// record 2 at offset 176: 60 bytes, IPv4 proto 6 ports 40000->80
}
