package query

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
	"github.com/pcapflow/pcapflow/pcapio"
)

// SyntaxError is a filter that does not parse or holds an invalid value.
type SyntaxError struct {
	Filter string
	Offset int // byte offset of the fault in Filter
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter error at column %d: %s", e.Offset+1, e.Msg)
}

// Caret returns the filter with a caret under the fault, on two lines.
func (e *SyntaxError) Caret() string {
	return "  " + e.Filter + "\n  " + strings.Repeat(" ", e.Offset) + "^"
}

// Parse parses a filter. The empty filter gives a nil Expr, which
// matches every flow.
func Parse(s string) (Expr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	tree, err := parser().ParseString("", s)
	if err != nil {
		return nil, explain(s, err)
	}
	c := converter{src: s}
	e := c.or(tree)
	if c.err != nil {
		return nil, c.err
	}
	return e, nil
}

// MustParse is Parse for filters known to be valid (tests, examples).
func MustParse(s string) Expr {
	e, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return e
}

// explain turns a participle error into a SyntaxError that says, in
// plain words, what was expected at the fault.
func explain(src string, err error) error {
	var perr participle.Error
	if !errors.As(err, &perr) {
		return &SyntaxError{Filter: src, Msg: err.Error()}
	}
	off := perr.Position().Offset
	if off > len(src) {
		off = len(src)
	}
	toks, lerr := lexTokens(src)
	if lerr != nil {
		return lerr
	}
	var prev, found string
	depth := 0
	for _, t := range toks {
		if t.Pos.Offset >= off {
			found = fmt.Sprintf("%q", t.Value)
			break
		}
		prev = strings.ToLower(t.Value)
		switch t.Value {
		case "(":
			depth++
		case ")":
			depth--
		}
	}
	if found == "" {
		found = "the end of the filter"
		off = len(src)
	}
	return &SyntaxError{Filter: src, Offset: off, Msg: fmt.Sprintf("%s, found %s", expectation(prev, depth), found)}
}

// lexTokens splits a filter into tokens (without white space); a
// character no token starts with is a SyntaxError at its position.
func lexTokens(src string) ([]lexer.Token, error) {
	lx, err := filterLexer().Lex("", strings.NewReader(src))
	if err != nil {
		return nil, err
	}
	ws := filterLexer().Symbols()["ws"]
	var out []lexer.Token
	for {
		t, err := lx.Next()
		if err != nil {
			var le *lexer.Error
			off := len(src)
			if errors.As(err, &le) {
				off = le.Pos.Offset
			}
			ch := ""
			if off < len(src) {
				ch = fmt.Sprintf(" %q", src[off:off+1])
			}
			return nil, &SyntaxError{Filter: src, Offset: off, Msg: "unexpected character" + ch}
		}
		if t.EOF() {
			return out, nil
		}
		if t.Type != ws {
			out = append(out, t)
		}
	}
}

const primitives = "a filter primitive (host, net, port, portrange, proto, tcp, udp, icmp, ip, ip6, vlan, ether, flow, after, before, packets, bytes, community, tunnel, vni, inner, outer), 'not' or '('"

// expectation says what may follow the token prev.
func expectation(prev string, depth int) string {
	switch prev {
	case "", "and", "or", "not", "(", "&&", "||", "!":
		return "expected " + primitives
	case "host":
		return "expected an IP address after 'host'"
	case "net":
		return "expected a network after 'net' (10.0.0.0/8, or an address and 'mask 255.0.0.0')"
	case "mask":
		return "expected a netmask after 'mask' (such as 255.255.0.0)"
	case "port":
		return "expected a port number or service name after 'port'"
	case "portrange":
		return "expected a port range after 'portrange' (such as 8000-8080)"
	case "proto":
		return "expected a protocol name or number after 'proto'"
	case "flow":
		return "expected a flow ID or range after 'flow' (such as 12 or 10-20)"
	case "ether":
		return "expected 'host', 'src', 'dst' or a MAC address after 'ether'"
	case "src", "dst":
		return "expected host, net, port or portrange after '" + prev + "'"
	case "after", "before":
		return "expected a time after '" + prev + "' (such as 2024-05-01T10:00:00Z or 2024-05-01)"
	case "packets", "bytes":
		return "expected a comparison (>, >=, <, <=, ==, !=) after '" + prev + "'"
	case ">", ">=", "<", "<=", "==", "!=", "=":
		return "expected a number (K, M, G suffixes allowed)"
	case "community":
		return "expected a Community ID after 'community' (1:...=)"
	case "vni":
		return "expected a tunnel ID after 'vni'"
	}
	if depth > 0 {
		return "expected 'and', 'or' or ')'"
	}
	return "expected 'and', 'or' or the end of the filter"
}

// converter builds the AST from the parse tree and checks every value.
type converter struct {
	src string
	err error
	// again rebuilds the last primitive with another value, for a bare
	// value that repeats it ('port 80 or 443'); nil when the last
	// primitive takes no value.
	again func(v *gValue) Expr
}

func (c *converter) fail(pos lexer.Position, format string, args ...any) {
	if c.err == nil {
		c.err = &SyntaxError{Filter: c.src, Offset: pos.Offset, Msg: fmt.Sprintf(format, args...)}
	}
}

func (c *converter) or(g *gOr) Expr {
	// tcpdump gives 'and' and 'or' the same precedence, left to right;
	// here 'and' binds tighter. The two agree unless an 'and' follows an
	// 'or' at the same level: 'a or b and c' is '(a or b) and c' to
	// tcpdump and 'a or (b and c)' here. Such a filter, pasted from a
	// tcpdump command line, is refused rather than read either way.
	for _, r := range g.Right {
		if len(r.Right) > 0 {
			c.fail(r.Right[0].Pos, "'and' after 'or' needs parentheses: tcpdump reads 'a or b and c' as '(a or b) and c', "+
				"pcapflow's precedence ('and' before 'or') as 'a or (b and c)'; write the one you mean")
			return nil
		}
	}
	e := c.and(g.Left)
	for _, r := range g.Right {
		e = &Or{e, c.and(r)}
	}
	return e
}

func (c *converter) and(g *gAnd) Expr {
	e := c.not(g.Left)
	for _, r := range g.Right {
		e = &And{e, c.not(r)}
	}
	return e
}

func (c *converter) not(g *gNot) Expr {
	if g.Not != nil {
		return &Not{c.not(g.Not)}
	}
	if g.Prim.Sub != nil {
		return c.or(g.Prim.Sub)
	}
	if v := g.Prim.Bare; v != nil {
		if c.again == nil {
			switch c.tokType(v) {
			case "Name":
				c.fail(v.Pos, "expected %s, found %q (host names are not resolved: give an IP address, host 192.0.2.1)", primitives, v.Tok.Value)
			case "Ident":
				c.fail(v.Pos, "expected %s, found %q", primitives, v.Tok.Value)
			default:
				c.fail(v.Pos, "a value needs a primitive before it (host, net, port, ...), found %q", v.Tok.Value)
			}
			return nil
		}
		return c.again(v)
	}
	c.again = nil
	return c.pred(g.Prim.Pred)
}

func (c *converter) tokType(v *gValue) string {
	for name, t := range filterLexer().Symbols() {
		if t == v.Tok.Type {
			return name
		}
	}
	return ""
}

func (c *converter) dir(d *gDir) Dir {
	if d == nil {
		return DirEither
	}
	first := strings.ToLower(d.First)
	if d.Op == "" {
		if first == "src" {
			return DirSrc
		}
		return DirDst
	}
	if strings.EqualFold(d.First, d.Second) {
		if first == "src" {
			return DirSrc
		}
		return DirDst
	}
	if strings.ToLower(d.Op) == "and" {
		return DirBoth
	}
	return DirEither
}

func (c *converter) pred(p *gPred) Expr {
	switch {
	case p.Flow != nil:
		c.again = c.flowRange
		return c.flowRange(p.Flow)
	case p.Ether != nil:
		v := p.Ether.Val
		if c.tokType(v) != "MAC" {
			c.fail(v.Pos, "expected a MAC address (aa:bb:cc:dd:ee:ff), found %q", v.Tok.Value)
			return nil
		}
		hw, err := net.ParseMAC(v.Tok.Value)
		if err != nil || len(hw) != 6 {
			c.fail(v.Pos, "invalid MAC address %q", v.Tok.Value)
			return nil
		}
		return &Ether{Dir: c.dir(p.Ether.Dir), MAC: [6]byte(hw)}
	case p.Addr != nil:
		a := *p.Addr
		c.again = func(v *gValue) Expr { b := a; b.Val, b.Mask = v, nil; return c.addr(&b) }
		return c.addr(p.Addr)
	case p.DirValue != nil:
		d := p.DirValue.Dir
		c.again = func(v *gValue) Expr { return c.dirValue(&gDirVal{Dir: d, Val: v}) }
		return c.dirValue(p.DirValue)
	case p.IPProto != nil:
		e := c.proto(&gValue{Pos: p.IPProto.Val.Pos, Tok: p.IPProto.Val.Tok})
		if v := strings.ToLower(p.IPProto.Version); v != "" && e != nil {
			ver := uint8(4)
			if v == "ip6" {
				ver = 6
			}
			return &And{&IPVersion{ver}, e}
		}
		return e
	case p.Word != nil:
		var word Expr
		switch w := strings.ToLower(p.Word.Word); w {
		case "ip":
			word = &IPVersion{4}
		case "ip6":
			word = &IPVersion{6}
		default:
			word = &Proto{protocols[w]}
		}
		// tcpdump's protocol qualifier: 'tcp port 80' is 'tcp and port 80'.
		var qualified func(v *gValue) Expr
		switch {
		case p.Word.Addr != nil:
			a := *p.Word.Addr
			qualified = func(v *gValue) Expr {
				b := a
				if v != nil {
					b.Val, b.Mask = v, nil
				}
				return c.addr(&b)
			}
		case p.Word.Dir != nil:
			d := *p.Word.Dir
			qualified = func(v *gValue) Expr {
				if v != nil {
					d.Val = v
				}
				return c.dirValue(&d)
			}
		default:
			return word
		}
		c.again = func(v *gValue) Expr { return both(word, qualified(v)) }
		return both(word, qualified(nil))
	case p.Vlan != nil:
		if p.Vlan.Val == nil {
			return &VLAN{Any: true}
		}
		vlan := func(v *gValue) Expr {
			n, ok := c.uint(v, 4095, "a VLAN ID (0-4095)")
			if !ok {
				return nil
			}
			return &VLAN{ID: uint16(n)}
		}
		c.again = vlan
		return vlan(p.Vlan.Val)
	case p.Time != nil:
		v := p.Time.Val
		t, err := parseTime(v.Tok.Value)
		if c.tokType(v) != "Time" || err != nil {
			c.fail(v.Pos, "expected a time (2024-05-01T10:00:00Z, 2024-05-01T10:00, 2024-05-01), found %q", v.Tok.Value)
			return nil
		}
		return &Time{After: strings.EqualFold(p.Time.Kind, "after"), T: t}
	case p.Count != nil:
		v := p.Count.Val
		typ := c.tokType(v)
		n, ok := parseSize(v.Tok.Value)
		if (typ != "Int" && typ != "Size") || !ok {
			c.fail(v.Pos, "expected a number (K, M, G suffixes allowed), found %q", v.Tok.Value)
			return nil
		}
		op := p.Count.Op
		if op == "=" {
			op = "=="
		}
		return &Count{Bytes: strings.EqualFold(p.Count.Kind, "bytes"), Op: op, N: n}
	case p.Tunnel != nil:
		if p.Tunnel.Type == nil {
			return &Tunnel{}
		}
		v := p.Tunnel.Type
		tt, ok := pcapio.ParseTunnelType(strings.ToLower(v.Tok.Value))
		if !ok {
			c.fail(v.Pos, "unknown tunnel type %q (want vxlan, geneve, gre, ipip or gtpu)", v.Tok.Value)
			return nil
		}
		return &Tunnel{Type: tt}
	case p.VNI != nil:
		n, ok := c.uint(p.VNI, 1<<32-1, "a tunnel ID (VNI, GRE key)")
		if !ok {
			return nil
		}
		return &VNI{ID: uint32(n)}
	case p.Nesting != "":
		return &Nesting{Inner: strings.EqualFold(p.Nesting, "inner")}
	case p.Community != nil:
		v := p.Community
		if c.tokType(v) != "Community" {
			c.fail(v.Pos, "expected a Community ID (1: and 28 base64 characters), found %q", v.Tok.Value)
			return nil
		}
		return &Community{ID: v.Tok.Value}
	}
	c.fail(p.Pos, "unknown filter primitive")
	return nil
}

// both is l and r, or nil when either failed.
func both(l, r Expr) Expr {
	if l == nil || r == nil {
		return nil
	}
	return &And{l, r}
}

// dirValue is 'src 10.0.0.1' (host implied) or 'dst 10.0.0.0/8' (net).
func (c *converter) dirValue(d *gDirVal) Expr {
	kind := "host"
	switch c.tokType(d.Val) {
	case "CIDR4", "CIDR6", "Abbrev":
		kind = "net"
	}
	return c.addr(&gAddr{Dir: d.Dir, Kind: kind, Val: d.Val})
}

func (c *converter) uint(v *gValue, max uint64, what string) (uint64, bool) {
	if c.tokType(v) != "Int" {
		c.fail(v.Pos, "expected %s, found %q", what, v.Tok.Value)
		return 0, false
	}
	n, err := strconv.ParseUint(v.Tok.Value, 10, 64)
	if err != nil || n > max {
		c.fail(v.Pos, "%s is out of range: expected %s", v.Tok.Value, what)
		return 0, false
	}
	return n, true
}

func (c *converter) flowRange(v *gValue) Expr {
	switch c.tokType(v) {
	case "Int":
		n, err := strconv.ParseUint(v.Tok.Value, 10, 64)
		if err != nil || n == 0 {
			c.fail(v.Pos, "flow IDs start at 1, found %q", v.Tok.Value)
			return nil
		}
		return &FlowRange{n, n}
	case "Range":
		lo, hi, ok := c.rangeOf(v, ^uint64(0), "a flow ID range (such as 10-20)")
		if !ok {
			return nil
		}
		if lo == 0 {
			c.fail(v.Pos, "flow IDs start at 1, found %q", v.Tok.Value)
			return nil
		}
		return &FlowRange{lo, hi}
	}
	c.fail(v.Pos, "expected a flow ID or range (such as 12 or 10-20), found %q", v.Tok.Value)
	return nil
}

func (c *converter) rangeOf(v *gValue, max uint64, what string) (uint64, uint64, bool) {
	a, b, _ := strings.Cut(v.Tok.Value, "-")
	lo, err1 := strconv.ParseUint(a, 10, 64)
	hi, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || lo > max || hi > max {
		c.fail(v.Pos, "%s is out of range: expected %s", v.Tok.Value, what)
		return 0, 0, false
	}
	if lo > hi {
		c.fail(v.Pos, "range %s is reversed: expected low-high", v.Tok.Value)
		return 0, 0, false
	}
	return lo, hi, true
}

func (c *converter) proto(v *gValue) Expr {
	switch c.tokType(v) {
	case "Int":
		n, ok := c.uint(v, 255, "a protocol number (0-255)")
		if !ok {
			return nil
		}
		return &Proto{uint8(n)}
	case "Ident", "Keyword":
		name := strings.ToLower(v.Tok.Value)
		if n, ok := protocols[name]; ok {
			return &Proto{n}
		}
		if keywords[name] {
			c.fail(v.Pos, "expected a protocol name or number after 'proto', found the reserved word %q", v.Tok.Value)
			return nil
		}
		c.fail(v.Pos, "unknown protocol %q (use a number, or one of tcp, udp, icmp, icmp6, sctp, gre, esp, ah, ...)", v.Tok.Value)
		return nil
	}
	c.fail(v.Pos, "expected a protocol name or number, found %q", v.Tok.Value)
	return nil
}

func (c *converter) addr(a *gAddr) Expr {
	d := c.dir(a.Dir)
	v := a.Val
	typ := c.tokType(v)
	kind := strings.ToLower(a.Kind)
	if a.Mask != nil && kind != "net" {
		c.fail(a.Mask.Pos, "'mask' goes only with 'net'")
		return nil
	}
	switch kind {
	case "host":
		if typ != "IP4" && typ != "IP6" {
			if typ == "Name" || typ == "Ident" {
				c.fail(v.Pos, "host names are not resolved: give an IP address instead of %q (pcapflow reads captures, not DNS)", v.Tok.Value)
			} else if typ == "CIDR4" || typ == "CIDR6" || typ == "Abbrev" {
				c.fail(v.Pos, "%q is a network: use 'net %s'", v.Tok.Value, v.Tok.Value)
			} else {
				c.fail(v.Pos, "expected an IP address after 'host', found %q", v.Tok.Value)
			}
			return nil
		}
		ip, ok := c.ip(v)
		if !ok {
			return nil
		}
		return &Net{Dir: d, Prefix: netip.PrefixFrom(ip, ip.BitLen()), Host: true}
	case "net":
		switch typ {
		case "Int", "Abbrev":
			// tcpdump's abbreviated IPv4 network: 'net 10' is 10.0.0.0/8,
			// 'net 10.77' 10.77.0.0/16, 'net 192.0.2' 192.0.2.0/24.
			if a.Mask != nil {
				c.fail(a.Mask.Pos, "'mask' needs a whole address before it")
				return nil
			}
			parts := strings.Split(v.Tok.Value, ".")
			var b [4]byte
			for i, x := range parts {
				n, err := strconv.ParseUint(x, 10, 8)
				if err != nil {
					c.fail(v.Pos, "invalid network %q", v.Tok.Value)
					return nil
				}
				b[i] = byte(n)
			}
			return &Net{Dir: d, Prefix: netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts))}
		case "CIDR4", "CIDR6":
			p, err := netip.ParsePrefix(v.Tok.Value)
			if err != nil {
				addr, bits, _ := strings.Cut(v.Tok.Value, "/")
				if _, aerr := netip.ParseAddr(addr); aerr != nil {
					c.fail(v.Pos, "invalid address %q", addr)
				} else {
					c.fail(v.Pos, "invalid prefix length /%s in %q", bits, v.Tok.Value)
				}
				return nil
			}
			return &Net{Dir: d, Prefix: p.Masked()}
		case "IP4", "IP6":
			ip, ok := c.ip(v)
			if !ok {
				return nil
			}
			bits := ip.BitLen()
			if a.Mask != nil {
				m, ok := c.ip(a.Mask)
				if !ok {
					return nil
				}
				ones, total := net.IPMask(m.AsSlice()).Size()
				if total == 0 || m.BitLen() != ip.BitLen() {
					c.fail(a.Mask.Pos, "invalid netmask %q: its ones must be contiguous and match the address family", a.Mask.Tok.Value)
					return nil
				}
				bits = ones
			}
			return &Net{Dir: d, Prefix: netip.PrefixFrom(ip, bits).Masked()}
		}
		c.fail(v.Pos, "expected a network after 'net' (10.0.0.0/8, or an address and 'mask 255.0.0.0'), found %q", v.Tok.Value)
		return nil
	case "port":
		switch typ {
		case "Int":
			n, ok := c.uint(v, 65535, "a port number (0-65535)")
			if !ok {
				return nil
			}
			return &Port{Dir: d, Lo: uint16(n), Hi: uint16(n)}
		case "Ident":
			if n, ok := services[strings.ToLower(v.Tok.Value)]; ok {
				return &Port{Dir: d, Lo: n, Hi: n}
			}
			c.fail(v.Pos, "unknown service %q: give the port number", v.Tok.Value)
			return nil
		case "Range":
			c.fail(v.Pos, "%q is a range: use 'portrange %s'", v.Tok.Value, v.Tok.Value)
			return nil
		}
		c.fail(v.Pos, "expected a port number or service name after 'port', found %q", v.Tok.Value)
		return nil
	default: // portrange
		if typ != "Range" {
			c.fail(v.Pos, "expected a port range after 'portrange' (such as 8000-8080), found %q", v.Tok.Value)
			return nil
		}
		lo, hi, ok := c.rangeOf(v, 65535, "ports 0-65535")
		if !ok {
			return nil
		}
		return &Port{Dir: d, Lo: uint16(lo), Hi: uint16(hi), Range: true}
	}
}

func (c *converter) ip(v *gValue) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(v.Tok.Value)
	if err != nil || ip.Zone() != "" {
		c.fail(v.Pos, "invalid IP address %q", v.Tok.Value)
		return netip.Addr{}, false
	}
	// An IPv4-mapped IPv6 address (::ffff:10.0.0.1) stays IPv6, as in
	// tcpdump: it matches IPv6 packets that carry it, not IPv4 ones, in
	// host and net alike.
	return ip, true
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}
