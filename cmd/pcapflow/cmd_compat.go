package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pcapflow/pcapflow"
)

const compatUsage = `usage: pcapflow compat [pcap_flow options] CAPTURE
       (also the binary itself when installed as pcap_flow or pcap_flows)

FMADIO pcap_flow's command line, without its bugs (docs/compat.md):

  --extract N                 flow N's packets to a pcap (-o FILE)
  --extract-ip A.B.C.D/M.M.M.M    packets to or from a network (also /24) to the pcap
  --extract-port LO HI        TCP/UDP packets with a port in [LO,HI] to the pcap
  --extract-tcp N             flow N's reassembled TCP stream (-o FILE, or a file
                              named as below)
  --extract-tcp-port LO HI    every TCP flow with a port in [LO,HI], one stream file each:
                              PREFIX_srcmac->dstmac_src->dst_sport->dport
  --extract-tcp-all           every TCP flow's stream
  --extract-udp-port LO HI    every UDP flow with a port in [LO,HI], one payload file each
  --extract-udp-all           every UDP flow's payloads
  --disable-tcp-port LO HI, --disable-udp-port LO HI   leave flows with a port in range out
  --output_tcp P, --output-tcp P   stream file prefix (a directory, or a path prefix);
                              alone, it writes every TCP flow's stream
  --output_udp P, --output-udp P   the same for UDP
  -o FILE                     output file of --extract* (pcap) and --extract-tcp N
  --tcpheader, --udpheader    a 12-byte header (u64 ns time, u16 length, u16 stream ID)
                              before each segment or datagram
  --flow-size-min B           no stream file for streams of B bytes or fewer
  --packet-max N              read only the first N packets
  --stdin                     read the capture from standard input
  --disable-display           no flow listing
  --flow-packet-min N         list only flows with at least N packets
  --flow-max N, --flow-5tuple, --vlan, --disable-timezone, --flow-flush, --cpu N,
  --uid X, --flow-hash-bits B, --verbose   accepted; see docs/compat.md
`

// compatOpts is a parsed pcap_flow command line.
type compatOpts struct {
	captures       []string
	extract        []uint64
	extractIP      []netip.Prefix
	extractPort    [][2]uint16
	extractTCP     []uint64
	tcpPorts       [][2]uint16
	tcpAll         bool
	udpPorts       [][2]uint16
	udpAll         bool
	noTCPPorts     [][2]uint16
	noUDPPorts     [][2]uint16
	outTCP, outUDP string
	out            string
	tcpHeader      bool
	udpHeader      bool
	sizeMin        int
	packetMax      int64
	noDisplay      bool
	packetMin      uint64
	progress       bool
}

// compatArgs says how many values each option takes.
var compatArgs = map[string]int{
	"--extract": 1, "--extract-ip": 1, "--extract-port": 2, "--extract-tcp": 1, "--extract-tcp-port": 2,
	"--extract-tcp-all": 0, "--extract-udp-port": 2, "--extract-udp-all": 0, "--disable-tcp-port": 2,
	"--disable-udp-port": 2, "--output_tcp": 1, "--output-tcp": 1, "--output_udp": 1, "--output-udp": 1,
	"-o": 1, "--tcpheader": 0, "--udpheader": 0, "--flow-size-min": 1, "--packet-max": 1, "--stdin": 0,
	"--disable-display": 0, "--flow-packet-min": 1, "--flow-max": 1, "--flow-5tuple": 0, "--vlan": 0,
	"--disable-timezone": 0, "--flow-flush": 0, "--cpu": 1, "--uid": 1, "--flow-hash-bits": 1, "--verbose": 0,
	"--progress": 0, "--output-pcap": 0, "--metamako": 0, "--metamako-double": 0, "--metamako-offset": 1,
	"-h": 0, "--help": 0,
}

func parseCompat(args []string) (*compatOpts, error) {
	o := &compatOpts{}
	num := func(opt, s string, max uint64) (uint64, error) {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v > max {
			return 0, usagef("%s %q: want a number up to %d", opt, s, max)
		}
		return v, nil
	}
	port := func(opt, a, b string) ([2]uint16, error) {
		lo, err := num(opt, a, 65535)
		if err != nil {
			return [2]uint16{}, err
		}
		hi, err := num(opt, b, 65535)
		if err != nil {
			return [2]uint16{}, err
		}
		if lo > hi {
			return [2]uint16{}, usagef("%s %d %d: the range is reversed", opt, lo, hi)
		}
		return [2]uint16{uint16(lo), uint16(hi)}, nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		n, known := compatArgs[a]
		if !known {
			if strings.HasPrefix(a, "-") && a != "-" {
				return nil, usagef("unknown option %q", a)
			}
			o.captures = append(o.captures, a)
			continue
		}
		if i+n >= len(args) {
			return nil, usagef("%s needs %d value(s)", a, n)
		}
		v := args[i+1 : i+1+n]
		i += n
		var err error
		switch a {
		case "-h", "--help":
			return nil, errHelp
		case "--extract":
			var id uint64
			if id, err = num(a, v[0], 1<<62); err == nil {
				o.extract = append(o.extract, id)
			}
		case "--extract-tcp":
			var id uint64
			if id, err = num(a, v[0], 1<<62); err == nil {
				o.extractTCP = append(o.extractTCP, id)
			}
		case "--extract-ip":
			var p netip.Prefix
			if p, err = parseIPMask(v[0]); err == nil {
				o.extractIP = append(o.extractIP, p)
			}
		case "--extract-port", "--extract-tcp-port", "--extract-udp-port", "--disable-tcp-port", "--disable-udp-port":
			var r [2]uint16
			if r, err = port(a, v[0], v[1]); err == nil {
				dst := map[string]*[][2]uint16{"--extract-port": &o.extractPort, "--extract-tcp-port": &o.tcpPorts,
					"--extract-udp-port": &o.udpPorts, "--disable-tcp-port": &o.noTCPPorts, "--disable-udp-port": &o.noUDPPorts}[a]
				*dst = append(*dst, r)
			}
		case "--extract-tcp-all":
			o.tcpAll = true
		case "--extract-udp-all":
			o.udpAll = true
		case "--output_tcp", "--output-tcp":
			o.outTCP = v[0]
		case "--output_udp", "--output-udp":
			o.outUDP = v[0]
		case "-o":
			o.out = v[0]
		case "--tcpheader":
			o.tcpHeader = true
		case "--udpheader":
			o.udpHeader = true
		case "--flow-size-min":
			var b uint64
			if b, err = num(a, v[0], 1<<40); err == nil {
				o.sizeMin = int(b)
			}
		case "--packet-max":
			var m uint64
			if m, err = num(a, v[0], 1<<62); err == nil {
				o.packetMax = int64(m)
			}
		case "--stdin":
			o.captures = append(o.captures, "-")
		case "--disable-display":
			o.noDisplay = true
		case "--flow-packet-min":
			o.packetMin, err = num(a, v[0], 1<<62)
		case "--progress":
			o.progress = true
		case "--output-pcap", "--metamako", "--metamako-double", "--metamako-offset":
			err = usagef("%s is not supported (docs/compat.md)", a)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(o.captures) != 1 {
		return nil, usagef("give one capture (or --stdin); got %d", len(o.captures))
	}
	return o, nil
}

// errHelp asks for the usage text.
var errHelp = fmt.Errorf("help")

// parseIPMask reads A.B.C.D/M.M.M.M or A.B.C.D/N; host bits are masked
// (pcap_flow required the network address and matched nothing otherwise).
func parseIPMask(s string) (netip.Prefix, error) {
	addr, mask, ok := strings.Cut(s, "/")
	if !ok {
		return netip.Prefix{}, usagef("--extract-ip %q: want A.B.C.D/M.M.M.M or A.B.C.D/N", s)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, usagef("--extract-ip %q: %v", s, err)
	}
	bits := -1
	if m, err := netip.ParseAddr(mask); err == nil && m.Is4() == a.Is4() {
		b := m.AsSlice()
		ones := 0
		for _, x := range b {
			for i := 7; i >= 0; i-- {
				if x&(1<<i) != 0 {
					ones++
				}
			}
		}
		if bits = ones; netip.PrefixFrom(m, ones).Masked().Addr() != m {
			return netip.Prefix{}, usagef("--extract-ip %q: the mask's ones are not contiguous", s)
		}
	} else if n, err := strconv.Atoi(mask); err == nil && n >= 0 && n <= a.BitLen() {
		bits = n
	}
	if bits < 0 {
		return netip.Prefix{}, usagef("--extract-ip %q: bad mask", s)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// portSel is the filter of the proto streams to write: all of them, or
// those on the port ranges, less the ranges of not; "" for none.
func portSel(proto string, all bool, ports, not [][2]uint16) string {
	sel := ""
	switch {
	case all:
		sel = proto
	case len(ports) > 0:
		sel = proto + " and (" + ranges("portrange", ports) + ")"
	}
	if sel != "" && len(not) > 0 {
		sel += " and not (" + ranges("portrange", not) + ")"
	}
	return sel
}

func ranges(word string, rs [][2]uint16) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %d-%d", word, r[0], r[1]))
	}
	return strings.Join(parts, " or ")
}

func runCompat(ctx context.Context, e *env, args []string) error {
	o, err := parseCompat(args)
	if err == errHelp {
		fmt.Fprint(e.stdout, compatUsage)
		return nil
	}
	if err != nil {
		return err
	}
	capture := o.captures[0]
	cf := &commonFlags{progress: o.progress, scan: o.packetMax > 0}
	var size int64 = -1
	if capture != "-" {
		if st, err := os.Stat(capture); err == nil {
			size = st.Size()
		}
	}
	stopProgress := e.compatProgress(capture, size)
	needPackets := len(o.extract)+len(o.extractIP)+len(o.extractPort)+len(o.extractTCP)+len(o.tcpPorts)+len(o.udpPorts) > 0 ||
		o.tcpAll || o.udpAll || o.outTCP != "" || o.outUDP != ""
	src, err := openCompatSource(ctx, e, cf, capture, needPackets, o.packetMax)
	stopProgress()
	if err != nil {
		return err
	}
	defer src.Close()
	name := capture
	if capture == "-" {
		name = "stdin"
	}
	gb := 0.0
	if size > 0 {
		gb = float64(size) / (1 << 30)
	}
	fmt.Fprintf(e.stdout, "[%30s] FileSize: %.2fGB\n", filepath.Base(name), gb)

	// Packets to one pcap: --extract, --extract-ip, --extract-port.
	var pcapTerms []string
	for _, id := range o.extract {
		pcapTerms = append(pcapTerms, fmt.Sprintf("flow %d", id))
	}
	for _, p := range o.extractIP {
		pcapTerms = append(pcapTerms, "net "+p.String())
	}
	if len(o.extractPort) > 0 {
		pcapTerms = append(pcapTerms, "(tcp or udp) and ("+ranges("portrange", o.extractPort)+")")
	}
	if len(pcapTerms) > 0 {
		out := o.out
		if out == "" && len(o.extractTCP) == 0 {
			out = o.outTCP // where pcap_flow wrote it
		}
		if out == "" {
			return usagef("--extract, --extract-ip and --extract-port need -o FILE")
		}
		if err := compatExtract(ctx, e, src, strings.Join(pcapTerms, " or "), out); err != nil {
			return err
		}
	}
	// Streams.
	if len(o.extractTCP) > 0 {
		if err := compatStreams(ctx, e, o, src, streamSel(o.extractTCP), o.out, o.outTCP, "tcp", o.tcpHeader); err != nil {
			return err
		}
	}
	tcpAll := o.tcpAll || (o.outTCP != "" && len(o.tcpPorts) == 0 && len(o.extractTCP) == 0 && len(pcapTerms) == 0)
	tcpSel := portSel("tcp", tcpAll, o.tcpPorts, o.noTCPPorts)
	if tcpSel != "" {
		// pcap_flow's README: --extract-tcp-port 80 80 -o ./tmp/port80_
		// names the files ./tmp/port80__...: -o is the file prefix of
		// --extract-tcp-port and --extract-tcp-all, as --output-tcp is.
		prefix := o.outTCP
		if prefix == "" && len(pcapTerms) == 0 && len(o.extractTCP) == 0 {
			prefix = o.out
		}
		if err := compatStreams(ctx, e, o, src, tcpSel, "", prefix, "tcp", o.tcpHeader); err != nil {
			return err
		}
	}
	udpSel := portSel("udp", o.udpAll || (o.outUDP != "" && len(o.udpPorts) == 0), o.udpPorts, o.noUDPPorts)
	if udpSel != "" {
		prefix := o.outUDP
		if prefix == "" && len(pcapTerms) == 0 && len(o.extractTCP) == 0 && tcpSel == "" {
			prefix = o.out
		}
		if err := compatStreams(ctx, e, o, src, udpSel, "", prefix, "udp", o.udpHeader || o.tcpHeader); err != nil {
			return err
		}
	}
	if !o.noDisplay {
		if err := compatDisplay(ctx, e, src, o.packetMin); err != nil {
			return err
		}
	}
	return finish(src, nil)
}

func streamSel(ids []uint64) string {
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("flow %d", id))
	}
	return "tcp and (" + strings.Join(parts, " or ") + ")"
}

// openCompatSource is openSource with pcap_flow's packet limit.
func openCompatSource(ctx context.Context, e *env, cf *commonFlags, capture string, keep bool, max int64) (*pcapflow.Archive, error) {
	if max == 0 {
		return openSource(ctx, e, cf, []string{capture}, keep)
	}
	opts := &pcapflow.ScanOptions{Warn: e.warn, Stdin: e.stdin, MaxPackets: max, FlowsOnly: !keep}
	a, err := pcapflow.Scan(ctx, []string{capture}, opts)
	if a == nil {
		return nil, err
	}
	return a, nil
}

func compatExtract(ctx context.Context, e *env, src *pcapflow.Archive, filter, out string) error {
	if err := checkOutput(src, out); err != nil {
		return err
	}
	ids, err := src.IDs(ctx, pcapflow.Query{Filter: filter})
	if err != nil {
		return err
	}
	n, err := writeOutput(src, out, true, e.stdout, func(w io.Writer) (int64, error) {
		return src.Extract(ctx, w, ids, nil)
	})
	if err == nil {
		fmt.Fprintf(e.stderr, "extracted %d %s of %d %s to %s\n", n, plural(uint64(n), "packet", "packets"), len(ids), pluralInt(len(ids), "flow", "flows"), out)
	}
	return err
}

// compatName is pcap_flow's stream file name: PREFIX_srcmac->dstmac_
// srcip->dstip_sport->dport, IPv4 octets and ports padded as it pads them.
func compatName(f *pcapflow.Flow) string {
	k := &f.Key
	mac := func(m [6]byte, ok bool) string {
		if !ok {
			return "00:00:00:00:00:00"
		}
		return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
	}
	ip := func(a netip.Addr) string {
		if a.Is4() {
			o := a.As4()
			return fmt.Sprintf("%3d.%3d.%3d.%3d", o[0], o[1], o[2], o[3])
		}
		return a.String()
	}
	return fmt.Sprintf("%s->%s_%s->%s_%6d->%6d", mac(f.SrcMAC, f.HasSrcMAC), mac(f.DstMAC, f.HasDstMAC),
		ip(k.SrcAddr()), ip(k.DstAddr()), k.SrcPort, k.DstPort)
}

// compatStreams writes the streams of the flows filter selects: to the
// single file out, or one file per flow named PREFIX_... after prefix.
func compatStreams(ctx context.Context, e *env, o *compatOpts, src *pcapflow.Archive, filter, out, prefix, defaultBase string, header bool) error {
	dir, base := ".", defaultBase
	if prefix != "" {
		if st, err := os.Stat(prefix); (err == nil && st.IsDir()) || strings.HasSuffix(prefix, "/") {
			dir = prefix
		} else {
			dir, base = filepath.Dir(prefix), filepath.Base(prefix)
		}
	}
	if out != "" {
		if err := checkOutput(src, out); err != nil {
			return err
		}
	} else if err := src.CheckOutput(filepath.Join(dir, "x")); err != nil {
		return usagef("refusing to write streams into %s: it is or is inside an index", dir)
	}
	var ids []uint64
	names := map[uint64]string{}
	used := map[string]int{}
	for f, err := range src.Flows(ctx, pcapflow.Query{Filter: filter}) {
		if err != nil {
			return err
		}
		if o.sizeMin > 0 && f.PayloadBytes <= uint64(o.sizeMin) {
			continue // pcap_flow's --flow-size-min
		}
		ids = append(ids, f.ID)
		name := base + "_" + compatName(f)
		// The same 4-tuple used again (port reuse): pcap_flow appended
		// to the first file; a later connection gets a suffix instead.
		if n := used[name]; n > 0 {
			used[name]++
			name = fmt.Sprintf("%s_c%d", name, n)
		} else {
			used[name] = 1
		}
		names[f.ID] = name
	}
	so := &pcapflow.StreamOptions{Header: header}
	if out != "" {
		var res pcapflow.StreamsResult
		_, err := writeOutput(src, out, true, e.stdout, func(w io.Writer) (int64, error) {
			var err error
			res, err = src.WriteStreams(ctx, w, ids, so)
			return res.Bytes, err
		})
		if err == nil {
			fmt.Fprintf(e.stderr, "wrote %d bytes of %d %s to %s\n", res.Totals.Delivered, len(ids), pluralInt(len(ids), "stream", "streams"), out)
		}
		return err
	}
	res, err := src.StreamsToDir(ctx, dir, ids, so, &pcapflow.DirOptions{Force: true, MaxOpen: 256,
		Name: func(f *pcapflow.Flow) string { return names[f.ID] }})
	if err == nil {
		fmt.Fprintf(e.stderr, "wrote %d stream %s (%d bytes) to %s\n", res.Files, pluralInt(res.Files, "file", "files"), res.Totals.Delivered, dir)
	}
	return err
}

// compatDisplay prints pcap_flow's listing: ascending packet count, then
// flow ID; the first column is the rank among all flows, shown or not.
func compatDisplay(ctx context.Context, e *env, src *pcapflow.Archive, packetMin uint64) error {
	w := newBufWriter(e.stdout)
	var b []byte
	rank := 0
	for f, err := range src.Flows(ctx, pcapflow.Query{Sort: pcapflow.SortPackets}) {
		if err != nil {
			return err
		}
		if f.Packets >= packetMin {
			b = fmt.Appendf(b[:0], "%5d ", rank)
			b = pcapflow.AppendSeed(b, f)
			b = append(b, '\n')
			w.Write(b)
		}
		rank++
	}
	return w.Flush()
}

// compatProgress prints pcap_flow's progress line on stderr about once a
// second while a capture is read (it starts after the first second, so
// short runs print nothing).
func (e *env) compatProgress(capture string, size int64) func() {
	p := &pcapflow.Progress{}
	e.compatPr = p
	printed := false
	stop := every(time.Second, func(el float64) {
		b := p.Bytes.Load()
		pct := 0.0
		if size > 0 {
			pct = 100 * float64(b) / float64(size)
		}
		fmt.Fprintf(e.stderr, "[%s %6.2f%%] Flows:%d %.2fM Pkts %.3fGbps : %.2fGB Out:%.2fGB\n",
			time.Now().UTC().Format("15:04:05"), pct, p.Flows.Load(), float64(p.Packets.Load())/1e6,
			float64(b)*8/el/1e9, float64(b)/1e9, 0.0)
		printed = true
	})
	return func() {
		stop()
		if printed {
			fmt.Fprintln(e.stderr)
		}
		e.compatPr = nil
	}
}
