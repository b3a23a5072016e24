package reasm_test

import (
	"fmt"

	"github.com/pcapflow/pcapflow/reasm"
)

// One direction of a TCP connection, its segments out of order with a
// retransmission: the stream comes out in order, each byte once.
func ExampleStream() {
	var out []byte
	s := reasm.NewStream(reasm.Policy{}, reasm.SinkFunc(func(ts int64, b []byte) error {
		out = append(out, b...)
		return nil
	}))
	const syn, ack, fin = 0x02, 0x10, 0x01
	s.Segment(1, 1000, syn, nil, 0)
	s.Segment(2, 1007, ack, []byte("world"), 5) // early
	s.Segment(3, 1001, ack, []byte("hello "), 6)
	s.Segment(4, 1007, ack, []byte("world"), 5) // again
	s.Segment(5, 1012, fin|ack, nil, 0)
	s.Close()
	st := s.Stats()
	fmt.Printf("%q: %d bytes, %d retransmitted\n", out, st.Delivered, st.RetransBytes)
	// Output:
	// "hello world": 11 bytes, 5 retransmitted
}
