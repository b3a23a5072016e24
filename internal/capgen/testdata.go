package capgen

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// Start is the first timestamp of every generated capture:
// 2024-05-01T10:00:00Z.
const Start = int64(1714557600) * 1e9

var (
	client4 = Endpoint{MAC: MAC(1), IP: netip.MustParseAddr("10.0.0.1")}
	server4 = Endpoint{MAC: MAC(2), IP: netip.MustParseAddr("10.0.0.2")}
	client6 = Endpoint{MAC: MAC(1), IP: netip.MustParseAddr("2001:db8::1")}
	server6 = Endpoint{MAC: MAC(2), IP: netip.MustParseAddr("2001:db8::2")}
)

func ep(e Endpoint, port uint16) Endpoint { e.Port = port; return e }

// Text returns n bytes of readable, position-dependent text, so that a
// misplaced byte in a reassembled stream changes its hash.
func Text(tag string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s line %04d\n", tag, i)
	}
	return b.Bytes()[:n]
}

// Basic is the quick-start capture: a little of everything a flow tool
// meets on an ordinary network.
//
//   - an IPv4 HTTP connection with handshake, request, a three-segment
//     response and FIN/ACK teardown; its bare ACKs are padded to 60 bytes
//   - a DNS query and response over UDP
//   - an ICMP echo request and reply
//   - an IPv6 TCP connection
//   - a TCP connection in VLAN 100, and a UDP exchange in QinQ 200/300
//   - a UDP datagram in three IPv4 fragments, and one in two IPv6 fragments
//   - the same TCP 4-tuple used twice (port reuse after FIN)
//   - an ARP request (a non-IP frame)
func Basic() *Capture {
	c := New(Start)
	http := c.NewTCP(ep(client4, 40000), ep(server4, 80), 1000, 5000)
	http.Handshake()
	http.Data(true, []byte("GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n"))
	http.Ack(false)
	body := Text("http-response", 3000)
	http.Data(false, append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n"), body[:1000]...))
	http.Data(false, body[1000:2000])
	http.Ack(true)
	http.Data(false, body[2000:])
	http.Ack(true)

	dnsQ := Frame{SrcMAC: MAC(1), DstMAC: MAC(3), Src: client4.IP, Dst: netip.MustParseAddr("8.8.8.8"),
		Proto: layers.IPProtocolUDP, SrcPort: 5353, DstPort: 53, Payload: []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")}
	c.Add(dnsQ.Bytes())
	dnsR := dnsQ
	dnsR.SrcMAC, dnsR.DstMAC, dnsR.Src, dnsR.Dst, dnsR.SrcPort, dnsR.DstPort = MAC(3), MAC(1), dnsQ.Dst, dnsQ.Src, 53, 5353
	dnsR.Payload = append(append([]byte{}, dnsQ.Payload...), []byte("\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\x5d\xb8\xd8\x22")...)
	c.Add(dnsR.Bytes())

	ping := Frame{Src: client4.IP, Dst: netip.MustParseAddr("10.0.0.9"), Proto: layers.IPProtocolICMPv4,
		ICMPType: 8, ICMPID: 7, ICMPSeq: 1, Payload: Text("ping", 32)}
	c.Add(ping.Bytes())
	pong := ping
	pong.Src, pong.Dst, pong.ICMPType, pong.SrcMAC, pong.DstMAC = ping.Dst, ping.Src, 0, MAC(2), MAC(1)
	c.Add(pong.Bytes())

	v6 := c.NewTCP(ep(client6, 50000), ep(server6, 443), 0xfffff000, 77)
	v6.Handshake()
	v6.Data(true, Text("tls-client-hello", 517))
	v6.Data(false, Text("tls-server-hello", 1400))
	v6.Ack(true)

	http.Close()

	vl := c.NewTCP(ep(client4, 40001), ep(server4, 8080), 1, 1)
	vl.VLANs = []uint16{100}
	vl.Handshake()
	vl.Data(true, Text("vlan-request", 100))
	vl.Data(false, Text("vlan-response", 200))
	vl.Close()

	qq := Frame{VLANs: []uint16{200, 300}, QinQ: true, Src: client4.IP, Dst: server4.IP,
		Proto: layers.IPProtocolUDP, SrcPort: 6000, DstPort: 7000, Payload: Text("qinq", 64)}
	c.Add(qq.Bytes())

	frag := Frame{Src: client4.IP, Dst: server4.IP, Proto: layers.IPProtocolUDP, SrcPort: 9000, DstPort: 9001,
		IPID: 4242, Payload: Text("fragmented-udp", 2500)}
	for _, f := range Fragments4(&frag, 1000) {
		c.Add(f)
	}
	frag6 := Frame{Src: client6.IP, Dst: server6.IP, Proto: layers.IPProtocolUDP, SrcPort: 9100, DstPort: 9101,
		Payload: Text("fragmented-udp6", 1800)}
	for _, f := range Fragments6(&frag6, 1200, 0xabcdef) {
		c.Add(f)
	}

	c.Add(ARP())
	v6.Close()

	for i := 0; i < 2; i++ { // the same 4-tuple twice
		r := c.NewTCP(ep(client4, 41000), ep(server4, 25), uint32(10000+i*50000), uint32(90000+i*7))
		r.Handshake()
		r.Data(false, []byte(fmt.Sprintf("220 mail ready, connection %d\r\n", i+1)))
		r.Data(true, []byte("QUIT\r\n"))
		r.Close()
	}
	return c
}

// File is one generated test capture.
type File struct {
	Name string
	Doc  string
	Make func() []byte
}

// Files lists every capture committed under testdata/.
func Files() []File {
	return []File{
		{"basic.pcap", "quick-start capture: microsecond pcap, little-endian, Ethernet", pcapOf(Basic, PcapOptions{})},
		{"basic-ns-be.pcap", "the same packets as nanosecond pcap, big-endian", pcapOf(Basic, PcapOptions{Nanos: true, BigEndian: true})},
		{"basic.pcapng", "the same packets as pcapng: two sections, each with an Ethernet (µs) and a raw-IP (ns) interface, unknown and name-resolution blocks in between", func() []byte {
			c := Basic()
			for i := range c.Packets {
				p := &c.Packets[i]
				if i%3 == 2 && len(p.Data) > 14 && p.Data[12] == 0x08 && p.Data[13] == 0x00 {
					p.Data = StripEthernet(p.Data) // untagged IPv4 goes to the raw-IP interface
					p.Iface = 1
				}
			}
			return pcapngOf(c, NgOptions{
				Interfaces:   []NgInterface{{Link: 1}, {Link: 101, TsResol: 9}},
				SectionEvery: 30, Junk: 17,
			})
		}},
		{"reassembly.pcap", "TCP connections exercising each case of the reassembly policy (ReassemblyCases)", pcapOf(Reassembly, PcapOptions{Nanos: true})},
		{"tunnels.pcap", "TCP conversations in each kind of tunnel (TunnelCases)", pcapOf(Tunnels, PcapOptions{})},
		{"basic-be.pcapng", "the same packets as big-endian pcapng with one Ethernet interface in 2^-20 s units", func() []byte {
			return pcapngOf(Basic(), NgOptions{BigEndian: true, Interfaces: []NgInterface{{Link: 1, TsResol: 0x80 | 20}}})
		}},
	}
}

// pcapOf makes the capture that c returns into a pcap file's bytes.
func pcapOf(c func() *Capture, o PcapOptions) func() []byte {
	return func() []byte {
		var b bytes.Buffer
		must(c().WritePcap(&b, o))
		return b.Bytes()
	}
}

// pcapngOf is c as a pcapng file's bytes.
func pcapngOf(c *Capture, o NgOptions) []byte {
	var b bytes.Buffer
	must(c.WritePcapng(&b, o))
	return b.Bytes()
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// ReassemblyCase is one connection of the Reassembly capture: what its
// client sends, and the stream pcapflow must write (default policy).
type ReassemblyCase struct {
	Name string
	Port uint16 // client port; the server is 10.0.0.2:80
	Want string // the client→server stream
	Zero string // the same with --gaps zero
	Stop string // the same with --gaps stop
	Gaps int    // bytes missing
}

// ReassemblyCases lists the connections of Reassembly, in order.
var ReassemblyCases = []ReassemblyCase{
	{Name: "in order", Port: 30001, Want: "AAAABBBBCCCC"},
	{Name: "reordered", Port: 30002, Want: "AAAABBBBCCCC"},
	{Name: "duplicate", Port: 30003, Want: "AAAABBBBCCCC"},
	{Name: "conflicting overlap, first copy wins", Port: 30004, Want: "AAAABBBBCCCC"},
	{Name: "gap", Port: 30005, Want: "AAAACCCC", Zero: "AAAA\x00\x00\x00\x00CCCC", Stop: "AAAA", Gaps: 4},
	{Name: "sequence wrap", Port: 30006, Want: "AAAABBBBCCCC"},
	{Name: "capture starts mid-stream", Port: 30007, Want: "BBBBCCCC"},
	{Name: "SYN with data", Port: 30008, Want: "HELLOAAAA"},
	{Name: "RST flushes buffered data", Port: 30009, Want: "AAAACCCC", Zero: "AAAA\x00\x00\x00\x00CCCC", Stop: "AAAA", Gaps: 4},
	{Name: "keep-alive probe", Port: 30010, Want: "AAAABBBB"},
	{Name: "Ethernet padding is not data", Port: 30011, Want: "AB"},
	{Name: "hole before the FIN", Port: 30012, Want: "AAAA", Zero: "AAAA\x00\x00\x00\x00", Stop: "AAAA", Gaps: 4},
}

// Reassembly is a capture of TCP connections exercising each case of
// the reassembly policy, one connection per case (ReassemblyCases).
func Reassembly() *Capture {
	c := New(Start)
	srv := ep(server4, 80)
	conn := func(port uint16, isn uint32) *TCPConn {
		return c.NewTCP(ep(client4, port), srv, isn, 7000)
	}
	A, B, C := []byte("AAAA"), []byte("BBBB"), []byte("CCCC")
	data := func(t *TCPConn, bs ...[]byte) { // from the client, in order
		for _, b := range bs {
			t.Data(true, b)
		}
	}
	const isn = 1000
	shake := func(port uint16) *TCPConn { // a connection after its handshake
		t := conn(port, isn)
		t.Handshake()
		return t
	}
	// in order
	t := shake(30001)
	data(t, A, B, C)
	t.Close()
	// reordered: C, A, B
	t = shake(30002)
	t.Raw(true, 0x18, isn+9, C)
	t.Raw(true, 0x18, isn+1, A)
	t.Raw(true, 0x18, isn+5, B)
	t.NextA = isn + 13
	t.Close()
	// duplicate: A, B, B, C
	t = shake(30003)
	data(t, A, B)
	t.Raw(true, 0x18, isn+5, B)
	t.Data(true, C)
	t.Close()
	// conflicting overlap: A, B, then "XXXX" over B, then C
	t = shake(30004)
	data(t, A, B)
	t.Raw(true, 0x18, isn+5, []byte("XXXX"))
	t.Data(true, C)
	t.Close()
	// gap: A, C (B never seen)
	t = shake(30005)
	t.Data(true, A)
	t.Raw(true, 0x18, isn+9, C)
	t.NextA = isn + 13
	t.Close()
	// sequence wrap: the ISN is 6 below 2^32
	t = conn(30006, 0xfffffffa)
	t.Handshake()
	data(t, A, B, C)
	t.Close()
	// mid-stream: no handshake in the capture
	t = conn(30007, isn)
	t.NextA, t.NextB = isn+5, 7001
	data(t, B, C)
	t.Close()
	// SYN with data
	t = conn(30008, isn)
	t.Send(true, 0x02, []byte("HELLO"))
	t.Send(false, 0x12, nil)
	t.Ack(true)
	t.Data(true, A)
	t.Close()
	// RST flushes buffered data: A, C, RST
	t = shake(30009)
	t.Data(true, A)
	t.Raw(true, 0x18, isn+9, C)
	t.Raw(true, 0x14, isn+13, nil)
	// keep-alive: a garbage byte at next-1 between A and B
	t = shake(30010)
	t.Data(true, A)
	t.Raw(true, 0x10, isn+4, []byte("Z"))
	t.Data(true, B)
	t.Close()
	// padding: a 2-byte segment in a 60-byte frame with a trailer
	t = shake(30011)
	f := Frame{SrcMAC: client4.MAC, DstMAC: server4.MAC, Src: client4.IP, Dst: server4.IP, Proto: layers.IPProtocolTCP,
		SrcPort: 30011, DstPort: 80, Flags: 0x18, Seq: isn + 1, Ack: 7001, Payload: []byte("AB"), Trailer: []byte("PADDING!")}
	c.Add(f.Bytes())
	t.NextA = isn + 3
	t.Close()
	// hole before the FIN: A, then the FIN four bytes later (B lost)
	t = shake(30012)
	t.Data(true, A)
	t.NextA = isn + 9
	t.Close()
	return c
}
