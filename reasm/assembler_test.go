package reasm_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
	"github.com/pcapflow/pcapflow/reasm"
)

// Whether flow state lives in the dense slice (Expect with dense IDs) or
// the map (no Expect, or IDs too sparse), streams come out the same and
// Close ends the unfinished ones in ID order, on every run.
func TestAssemblerFlowStateAndCloseOrder(t *testing.T) {
	c := capgen.New(capgen.Start)
	const conns = 40
	var owner []int // connection of each packet
	for i := 0; i < conns; i++ {
		a := capgen.Endpoint{MAC: capgen.MAC(1), IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: uint16(2000 + i)}
		b := capgen.Endpoint{MAC: capgen.MAC(2), IP: netip.MustParseAddr("192.0.2.1"), Port: 80}
		conn := c.NewTCP(a, b, uint32(i)*7919, uint32(i)*104729)
		conn.Handshake()
		conn.Data(true, []byte(fmt.Sprintf("request %d", i)))
		for len(owner) < len(c.Packets) {
			owner = append(owner, i)
		}
		// no FIN: Close ends the stream
	}
	run := func(idOf func(conn int) uint64, expect bool) ([]uint64, []byte) {
		var out bytes.Buffer
		sw := &reasm.StreamWriter{W: &out, Header: true}
		a := reasm.NewAssembler(reasm.Policy{}, func(id uint64, _ uint8) reasm.Sink { return sw.Sink(id) }, nil)
		var ended []uint64
		a.Ended = func(id uint64) { ended = append(ended, id) }
		if expect {
			var ids []uint64
			for i := 0; i < conns; i++ {
				ids = append(ids, idOf(i))
			}
			a.Expect(ids)
		}
		for i, p := range c.Packets {
			rec := &pcapio.Record{Timestamp: p.TS, LinkType: pcapio.LinkEthernet, Data: p.Data, CapLen: len(p.Data), OrigLen: len(p.Data)}
			if err := a.Record(idOf(owner[i]), rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		return ended, out.Bytes()
	}
	dense := func(i int) uint64 { return uint64(100 + i) }
	sparse := func(i int) uint64 { return uint64(i+1) * 1_000_003 }
	wantEnded, wantOut := run(dense, true)
	if len(wantEnded) != conns || !slices.IsSorted(wantEnded) {
		t.Fatalf("ended %v, want %d flows in ID order", wantEnded, conns)
	}
	for _, tc := range []struct {
		name   string
		idOf   func(int) uint64
		expect bool
	}{{"dense, again", dense, true}, {"dense IDs without Expect", dense, false}, {"sparse IDs", sparse, true}} {
		for rep := 0; rep < 3; rep++ {
			ended, out := run(tc.idOf, tc.expect)
			if len(ended) != conns || !slices.IsSorted(ended) {
				t.Errorf("%s: ended %v, want %d flows in ID order", tc.name, ended, conns)
			}
			if tc.name != "sparse IDs" && !bytes.Equal(out, wantOut) {
				t.Errorf("%s: output differs", tc.name)
			}
		}
	}
}
