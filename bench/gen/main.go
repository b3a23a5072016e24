// Command gen writes a large, realistic capture for benchmarks,
// deterministically from a seed: full TCP connections (handshake, a
// request, a heavy-tailed response, FIN or RST) with retransmissions,
// reordering, recovered losses and capture gaps; DNS-like UDP; ICMP echo;
// a share of IPv6 and of VLAN-tagged frames. Frame sizes follow real
// traffic: many bare ACKs, many full-MTU segments. A few elephant
// connections carry a large share of the bytes.
//
//	go run ./bench/gen -size 2G -o /tmp/bench.pcap [-format pcapng] [-nanos] [-seed 1]
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"time"
)

type config struct {
	size        int64
	format      string
	nanos       bool
	seed        int64
	active      int     // concurrent connections
	ipv6Share   float64 // of connections
	vlanShare   float64
	lossRate    float64 // segments lost and retransmitted later (out of order)
	gapRate     float64 // segments lost from the capture for good
	retransRate float64 // segments sent twice in a row
	reorderRate float64 // adjacent segments swapped
	elephants   int
	maxResp     int // cap on a response's size: small values give many flows per byte
}

func main() {
	var c config
	var size, out string
	flag.StringVar(&size, "size", "2G", "approximate capture size (K, M, G suffixes)")
	flag.StringVar(&out, "o", "", "output file (default stdout)")
	flag.StringVar(&c.format, "format", "pcap", "pcap or pcapng")
	flag.BoolVar(&c.nanos, "nanos", false, "nanosecond timestamps (pcap)")
	flag.Int64Var(&c.seed, "seed", 1, "random seed: the same seed and options give the same file")
	flag.IntVar(&c.active, "active", 4096, "concurrent connections")
	flag.Float64Var(&c.ipv6Share, "ipv6", 0.2, "share of IPv6 connections")
	flag.Float64Var(&c.vlanShare, "vlan", 0.1, "share of VLAN-tagged connections")
	flag.Float64Var(&c.lossRate, "loss", 0.002, "share of data segments lost and retransmitted out of order")
	flag.Float64Var(&c.gapRate, "gap", 0.0005, "share of data segments missing from the capture")
	flag.Float64Var(&c.retransRate, "retrans", 0.005, "share of data segments sent twice")
	flag.Float64Var(&c.reorderRate, "reorder", 0.003, "share of data segments swapped with the next")
	flag.IntVar(&c.elephants, "elephants", 4, "connections that each carry 5% of the bytes")
	flag.IntVar(&c.maxResp, "max-resp", 64<<20, "largest TCP response in bytes (lower it for more flows per byte)")
	flag.Parse()
	var err error
	if c.size, err = parseSize(size); err != nil {
		fail(err)
	}
	w := os.Stdout
	if out != "" {
		if w, err = os.Create(out); err != nil {
			fail(err)
		}
	}
	start := time.Now()
	g := newGen(c, w)
	if err := g.run(); err != nil {
		fail(err)
	}
	if err := w.Close(); err != nil {
		fail(err)
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "wrote %d bytes, %d packets, %d TCP connections, %d UDP and %d ICMP exchanges in %.2fs (%.0f MB/s)\n",
		g.written, g.packets, g.tcpConns, g.udpConns, g.icmpConns, el.Seconds(), float64(g.written)/1e6/el.Seconds())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	v, err := strconv.ParseFloat(s, 64)
	return int64(v * float64(mult)), err
}

const mss = 1460

// conn is one generated conversation.
type conn struct {
	kind     byte // 't' TCP, 'u' UDP, 'i' ICMP
	v6       bool
	vlan     uint16
	cli, srv [16]byte
	cport    uint16
	sport    uint16
	cmac     [6]byte
	smac     [6]byte
	phase    int
	cseq     uint32 // next client sequence number
	sseq     uint32
	req      int // request bytes left
	resp     int // response bytes left
	respOff  int // position in the random payload
	rst      bool
	pending  []seg // segments to send before continuing (losses, reordering)
	unacked  int   // server segments since the last client ACK
}

type seg struct {
	fromCli bool
	flags   byte
	seq     uint32
	n       int
	off     int
}

type gen struct {
	c                             config
	r                             *rand.Rand
	bw                            *bufio.Writer
	payload                       []byte
	conns                         []*conn
	clock                         int64
	frame                         []byte
	hdr                           []byte
	written                       int64
	packets                       int64
	tcpConns, udpConns, icmpConns int64
	elephantsLeft                 int
	elephants                     []*conn
}

func newGen(c config, w *os.File) *gen {
	g := &gen{c: c, r: rand.New(rand.NewSource(c.seed)), bw: bufio.NewWriterSize(w, 4<<20),
		payload: make([]byte, 4<<20), clock: 1714557600e9, frame: make([]byte, 0, 2048), elephantsLeft: c.elephants}
	g.r.Read(g.payload)
	return g
}

func (g *gen) run() error {
	if err := g.writeHeader(); err != nil {
		return err
	}
	for len(g.conns) < g.c.active {
		g.conns = append(g.conns, g.newConn())
	}
	for g.written < g.c.size {
		// Elephants get a fixed share of the packets, as bulk transfers
		// take a large share of a link; the rest is spread evenly.
		if len(g.elephants) > 0 && g.r.Float64() < 0.35 {
			i := g.r.Intn(len(g.elephants))
			if done := g.step(g.elephants[i]); done {
				g.elephants = append(g.elephants[:i], g.elephants[i+1:]...)
			}
			continue
		}
		i := g.r.Intn(len(g.conns))
		c := g.conns[i]
		if done := g.step(c); done {
			g.conns[i] = g.newConn()
		}
		if g.bw.Buffered() > 3<<20 {
			if err := g.bw.Flush(); err != nil {
				return err
			}
		}
	}
	return g.bw.Flush()
}

func (g *gen) newConn() *conn {
	c := &conn{v6: g.r.Float64() < g.c.ipv6Share}
	if g.r.Float64() < g.c.vlanShare {
		c.vlan = uint16(10 + g.r.Intn(40))
	}
	id := g.r.Uint32()
	if c.v6 {
		copy(c.cli[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1})
		binary.BigEndian.PutUint32(c.cli[12:], id)
		copy(c.srv[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 2})
		binary.BigEndian.PutUint32(c.srv[12:], uint32(g.r.Intn(256)))
	} else {
		c.cli[0], c.cli[1], c.cli[2], c.cli[3] = 10, byte(id>>16), byte(id>>8), byte(id)
		c.srv[0], c.srv[1], c.srv[2], c.srv[3] = 192, 0, 2, byte(g.r.Intn(256))
	}
	c.cmac = [6]byte{2, 0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	c.smac = [6]byte{2, 1, 0, 0, 0, c.srv[3]}
	c.cport = uint16(1024 + g.r.Intn(64000))
	switch x := g.r.Float64(); {
	case x < 0.60:
		c.kind = 't'
		c.sport = []uint16{80, 443, 443, 443, 8080, 22, 25}[g.r.Intn(7)]
		c.cseq, c.sseq = g.r.Uint32(), g.r.Uint32()
		c.req = 100 + g.r.Intn(700)
		// Pareto response sizes: most are small, a few are huge.
		c.resp = int(math.Min(800/math.Pow(1-g.r.Float64(), 1/1.1), float64(g.c.maxResp)))
		if g.elephantsLeft > 0 && g.r.Intn(200) == 0 {
			// An elephant: 5% of the capture's bytes, scheduled apart.
			g.elephantsLeft--
			c.resp = int(g.c.size / 20)
			g.elephants = append(g.elephants, c)
			return g.newConn() // the elephant runs apart; the pool slot gets another
		}
		c.respOff = g.r.Intn(len(g.payload) - 2*mss)
		c.rst = g.r.Intn(20) == 0
		g.tcpConns++
	case x < 0.95:
		c.kind = 'u'
		c.sport = 53
		g.udpConns++
	default:
		c.kind = 'i'
		g.icmpConns++
	}
	return c
}

// step emits the next packet(s) of c and reports whether it is finished.
func (g *gen) step(c *conn) bool {
	switch c.kind {
	case 'u':
		n := 30 + g.r.Intn(60)
		g.udp(c, true, n)
		g.udp(c, false, n+16+g.r.Intn(300))
		return true
	case 'i':
		for i := 0; i < 2; i++ {
			g.icmp(c, i)
		}
		return true
	}
	if len(c.pending) > 0 {
		s := c.pending[0]
		c.pending = c.pending[1:]
		g.tcp(c, s)
		return false
	}
	switch c.phase {
	case 0:
		g.control(c, true, 0x02) // SYN
	case 1:
		g.control(c, false, 0x12) // SYN-ACK
	case 2:
		g.tcp(c, seg{fromCli: true, flags: 0x10, seq: c.cseq})
		c.phase++
	case 3: // request
		n := min(c.req, mss)
		g.data(c, true, n)
		c.req -= n
		if c.req == 0 {
			c.phase++
		}
	case 4: // response, with an ACK every two segments
		if c.unacked >= 2 {
			g.tcp(c, seg{fromCli: true, flags: 0x10, seq: c.cseq})
			c.unacked = 0
			break
		}
		n := min(c.resp, mss)
		g.data(c, false, n)
		c.unacked++
		c.resp -= n
		if c.resp == 0 {
			c.phase++
		}
	case 5:
		if c.rst {
			g.tcp(c, seg{fromCli: true, flags: 0x14, seq: c.cseq})
			return true
		}
		g.control(c, true, 0x11) // FIN
	case 6:
		g.control(c, false, 0x11)
	case 7:
		g.tcp(c, seg{fromCli: true, flags: 0x10, seq: c.cseq})
		return true
	}
	return false
}

// data sends n payload bytes, with the configured impairments.
func (g *gen) data(c *conn, fromCli bool, n int) {
	next := &c.sseq
	if fromCli {
		next = &c.cseq
	}
	s := seg{fromCli: fromCli, flags: 0x18, seq: *next, n: n, off: c.respOff + int(*next)%(2<<20)}
	*next += uint32(n)
	switch x := g.r.Float64(); {
	case x < g.c.gapRate:
		return // lost before the capture point, never seen
	case x < g.c.gapRate+g.c.lossRate:
		// Lost on the wire and retransmitted a few segments later.
		c.pending = append(c.pending, seg{fromCli: !fromCli, flags: 0x10, seq: c.seqOf(!fromCli)}, s)
		return
	case x < g.c.gapRate+g.c.lossRate+g.c.retransRate:
		g.tcp(c, s)
		g.tcp(c, s)
		return
	case x < g.c.gapRate+g.c.lossRate+g.c.retransRate+g.c.reorderRate:
		c.pending = append(c.pending, s)
		return
	}
	g.tcp(c, s)
}

func (c *conn) seqOf(cli bool) uint32 {
	if cli {
		return c.cseq
	}
	return c.sseq
}

func (g *gen) writeHeader() error {
	var h []byte
	if g.c.format == "pcapng" {
		shb := make([]byte, 28)
		binary.LittleEndian.PutUint32(shb[0:], 0x0a0d0d0a)
		binary.LittleEndian.PutUint32(shb[4:], 28)
		binary.LittleEndian.PutUint32(shb[8:], 0x1a2b3c4d)
		binary.LittleEndian.PutUint16(shb[12:], 1)
		binary.LittleEndian.PutUint64(shb[16:], ^uint64(0))
		binary.LittleEndian.PutUint32(shb[24:], 28)
		idb := make([]byte, 32)
		binary.LittleEndian.PutUint32(idb[0:], 1)
		binary.LittleEndian.PutUint32(idb[4:], 32)
		binary.LittleEndian.PutUint16(idb[8:], 1)
		binary.LittleEndian.PutUint32(idb[12:], 262144)
		binary.LittleEndian.PutUint16(idb[16:], 9) // if_tsresol
		binary.LittleEndian.PutUint16(idb[18:], 1)
		idb[20] = 9
		binary.LittleEndian.PutUint32(idb[28:], 32)
		h = append(shb, idb...)
	} else {
		h = make([]byte, 24)
		magic := uint32(0xa1b2c3d4)
		if g.c.nanos {
			magic = 0xa1b23c4d
		}
		binary.LittleEndian.PutUint32(h[0:], magic)
		binary.LittleEndian.PutUint16(h[4:], 2)
		binary.LittleEndian.PutUint16(h[6:], 4)
		binary.LittleEndian.PutUint32(h[16:], 262144)
		binary.LittleEndian.PutUint32(h[20:], 1)
	}
	_, err := g.bw.Write(h)
	g.written += int64(len(h))
	return err
}

// emit writes the frame in g.frame as one record.
func (g *gen) emit() {
	g.clock += 5000 + int64(g.r.Intn(30000))
	f := g.frame
	if g.c.format == "pcapng" {
		pad := (4 - len(f)%4) % 4
		n := 32 + len(f) + pad
		var h [28]byte
		binary.LittleEndian.PutUint32(h[0:], 6)
		binary.LittleEndian.PutUint32(h[4:], uint32(n))
		binary.LittleEndian.PutUint32(h[12:], uint32(uint64(g.clock)>>32))
		binary.LittleEndian.PutUint32(h[16:], uint32(g.clock))
		binary.LittleEndian.PutUint32(h[20:], uint32(len(f)))
		binary.LittleEndian.PutUint32(h[24:], uint32(len(f)))
		g.bw.Write(h[:])
		g.bw.Write(f)
		var t [8]byte
		binary.LittleEndian.PutUint32(t[pad:], uint32(n))
		g.bw.Write(t[:pad+4])
		g.written += int64(n)
	} else {
		var h [16]byte
		frac := g.clock % 1e9
		if !g.c.nanos {
			frac /= 1000
		}
		binary.LittleEndian.PutUint32(h[0:], uint32(g.clock/1e9))
		binary.LittleEndian.PutUint32(h[4:], uint32(frac))
		binary.LittleEndian.PutUint32(h[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(h[12:], uint32(len(f)))
		g.bw.Write(h[:])
		g.bw.Write(f)
		g.written += int64(16 + len(f))
	}
	g.packets++
}

// l2l3 starts a frame: Ethernet (and VLAN), IP header for an upper-layer
// payload of n bytes; it returns the offset of the IP header.
func (g *gen) l2l3(c *conn, fromCli bool, proto byte, n int) int {
	f := g.frame[:0]
	src, dst := c.cmac, c.smac
	sip, dip := c.cli, c.srv
	if !fromCli {
		src, dst, sip, dip = c.smac, c.cmac, c.srv, c.cli
	}
	f = append(f, dst[:]...)
	f = append(f, src[:]...)
	if c.vlan != 0 {
		f = append(f, 0x81, 0x00, byte(c.vlan>>8), byte(c.vlan))
	}
	l3 := 0
	if c.v6 {
		f = append(f, 0x86, 0xdd)
		l3 = len(f)
		f = append(f, 0x60, 0, 0, 0, byte(n>>8), byte(n), proto, 64)
		f = append(f, sip[:]...)
		f = append(f, dip[:]...)
	} else {
		f = append(f, 0x08, 0x00)
		l3 = len(f)
		tot := 20 + n
		f = append(f, 0x45, 0, byte(tot>>8), byte(tot), 0, 0, 0x40, 0, 64, proto, 0, 0)
		f = append(f, sip[:4]...)
		f = append(f, dip[:4]...)
		binary.BigEndian.PutUint16(f[l3+10:], ^csum(f[l3:l3+20], 0))
	}
	g.frame = f
	return l3
}

// control sends a SYN or FIN, which takes a sequence number, and moves
// c to its next phase.
func (g *gen) control(c *conn, fromCli bool, flags byte) {
	seq := &c.sseq
	if fromCli {
		seq = &c.cseq
	}
	g.tcp(c, seg{fromCli: fromCli, flags: flags, seq: *seq})
	*seq++
	c.phase++
}

func (g *gen) tcp(c *conn, s seg) {
	l3 := g.l2l3(c, s.fromCli, 6, 20+s.n)
	f := g.frame
	sp, dp := c.cport, c.sport
	ack := c.sseq
	if !s.fromCli {
		sp, dp = c.sport, c.cport
		ack = c.cseq
	}
	l4 := len(f)
	f = append(f, byte(sp>>8), byte(sp), byte(dp>>8), byte(dp))
	f = binary.BigEndian.AppendUint32(f, s.seq)
	if s.flags&0x10 == 0 {
		ack = 0
	}
	f = binary.BigEndian.AppendUint32(f, ack)
	f = append(f, 0x50, s.flags, 0xff, 0xff, 0, 0, 0, 0)
	if s.n > 0 {
		off := s.off % (len(g.payload) - s.n)
		f = append(f, g.payload[off:off+s.n]...)
	}
	binary.BigEndian.PutUint16(f[l4+16:], ^csum(f[l4:], pseudo(f, l3, c.v6, 6, len(f)-l4)))
	for len(f) < 60 {
		f = append(f, 0) // Ethernet padding of small frames
	}
	g.frame = f
	g.emit()
}

func (g *gen) udp(c *conn, fromCli bool, n int) {
	l3 := g.l2l3(c, fromCli, 17, 8+n)
	f := g.frame
	sp, dp := c.cport, c.sport
	if !fromCli {
		sp, dp = c.sport, c.cport
	}
	l4 := len(f)
	f = append(f, byte(sp>>8), byte(sp), byte(dp>>8), byte(dp), byte((8+n)>>8), byte(8+n), 0, 0)
	off := int(sp) * 7 % (len(g.payload) - n)
	f = append(f, g.payload[off:off+n]...)
	binary.BigEndian.PutUint16(f[l4+6:], ^csum(f[l4:], pseudo(f, l3, c.v6, 17, len(f)-l4)))
	for len(f) < 60 {
		f = append(f, 0)
	}
	g.frame = f
	g.emit()
}

func (g *gen) icmp(c *conn, i int) {
	n := 56
	proto, typ := byte(1), byte(8)
	if c.v6 {
		proto, typ = 58, 128
	}
	if i == 1 {
		typ = map[byte]byte{8: 0, 128: 129}[typ]
	}
	l3 := g.l2l3(c, i == 0, proto, 8+n)
	f := g.frame
	l4 := len(f)
	f = append(f, typ, 0, 0, 0, byte(c.cport>>8), byte(c.cport), 0, 1)
	f = append(f, g.payload[:n]...)
	var ps uint32
	if c.v6 {
		ps = pseudo(f, l3, true, 58, len(f)-l4)
	}
	binary.BigEndian.PutUint16(f[l4+2:], ^csum(f[l4:], ps))
	g.frame = f
	g.emit()
}

// pseudo is the sum of the transport pseudo-header.
func pseudo(f []byte, l3 int, v6 bool, proto byte, n int) uint32 {
	var s uint32
	if v6 {
		for i := l3 + 8; i < l3+40; i += 2 {
			s += uint32(binary.BigEndian.Uint16(f[i:]))
		}
	} else {
		for i := l3 + 12; i < l3+20; i += 2 {
			s += uint32(binary.BigEndian.Uint16(f[i:]))
		}
	}
	return s + uint32(proto) + uint32(n)
}

func csum(b []byte, s uint32) uint16 {
	sum := uint64(s)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v >> 32
		sum += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
