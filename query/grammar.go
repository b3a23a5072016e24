package query

import (
	"strings"
	"sync"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

// The grammar is one struct per precedence level (or < and < not), so
// that participle, which cannot do left recursion, gets precedence right.
// Primitive values are typed tokens; the few that are identifiers
// (protocol and service names) are checked against the reserved words by
// the converter to the AST, so "proto and" is an error and not proto=and.

// filterLexer orders its rules so that longer, more specific tokens win:
// times before ranges, MACs and community IDs before IPv6, CIDRs before
// addresses, sizes and ranges before integers. It is built when first
// used: compiling its expressions is 0.3 ms that every process would
// otherwise pay at start, filter or not (and a one-flow extract parses
// its filter while it opens the index).
var filterLexer = sync.OnceValue(func() *lexer.StatefulDefinition {
	return lexer.MustSimple([]lexer.SimpleRule{
		{Name: "ws", Pattern: `\s+`},
		{Name: "Time", Pattern: `\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:\d{2})?`},
		{Name: "Community", Pattern: `1:[A-Za-z0-9+/]{27}=`},
		{Name: "MAC", Pattern: `[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}`},
		{Name: "CIDR6", Pattern: `[0-9a-fA-F]*:[0-9a-fA-F:.]*:[0-9a-fA-F.]*/\d+`},
		{Name: "IP6", Pattern: `[0-9a-fA-F]*:[0-9a-fA-F:.]*:[0-9a-fA-F.]*`},
		{Name: "CIDR4", Pattern: `\d+\.\d+\.\d+\.\d+/\d+`},
		{Name: "IP4", Pattern: `\d+\.\d+\.\d+\.\d+`},
		{Name: "Size", Pattern: `\d+(?:\.\d+)?[kKmMgGtT][bB]?`},
		{Name: "Abbrev", Pattern: `\d+\.\d+(?:\.\d+)?\b`},
		{Name: "Range", Pattern: `\d+-\d+`},
		{Name: "Int", Pattern: `\d+`},
		{Name: "Op", Pattern: `>=|<=|==|!=|&&|\|\||[()!<>=]`},
		{Name: "Keyword", Pattern: `(?i)(?:and|or|not|flow|host|net|mask|portrange|port|proto|tcp|udp|icmp6|icmp|sctp|ip6|ip|vlan|ether|src|dst|after|before|packets|bytes|community|tunnel|vni|inner|outer)\b`},
		{Name: "Name", Pattern: `[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+`},
		{Name: "Ident", Pattern: `[A-Za-z_][A-Za-z0-9_-]*`},
	})
})

type gOr struct {
	Left  *gAnd   `parser:"@@"`
	Right []*gAnd `parser:"( ( 'or' | '||' ) @@ )*"`
}

type gAnd struct {
	Left  *gNot   `parser:"@@"`
	Right []*gNot `parser:"( ( 'and' | '&&' ) @@ )*"`
}

type gNot struct {
	Pos  lexer.Position
	Not  *gNot  `parser:"  ( 'not' | '!' ) @@"`
	Prim *gPrim `parser:"| @@"`
}

type gPrim struct {
	Sub  *gOr   `parser:"  '(' @@ ')'"`
	Pred *gPred `parser:"| @@"`
	// Bare is a value alone, as tcpdump repeats one: 'port 80 or 443' is
	// 'port 80 or port 443', the previous primitive with this value.
	Bare *gValue `parser:"| @@"`
}

// gValue is a value token with its position, for error carets.
type gValue struct {
	Pos lexer.Position
	Tok lexer.Token `parser:"@(Time | Community | MAC | CIDR6 | IP6 | CIDR4 | IP4 | Size | Abbrev | Range | Int | Name | Ident)"`
}

// gDir is a tcpdump direction qualifier.
type gDir struct {
	First  string `parser:"@( 'src' | 'dst' )"`
	Op     string `parser:"( @( 'or' | 'and' )"`
	Second string `parser:"  @( 'src' | 'dst' ) )?"`
}

type gPred struct {
	Pos       lexer.Position
	Flow      *gValue   `parser:"  'flow' @@"`
	Ether     *gEther   `parser:"| 'ether' @@"`
	Addr      *gAddr    `parser:"| @@"`
	DirValue  *gDirVal  `parser:"| @@"`
	IPProto   *gIPProto `parser:"| @@"`
	Word      *gWord    `parser:"| @@"`
	Vlan      *gVlan    `parser:"| @@"`
	Time      *gTime    `parser:"| @@"`
	Count     *gCount   `parser:"| @@"`
	Community *gValue   `parser:"| 'community' @@"`
	Tunnel    *gTunnel  `parser:"| @@"`
	VNI       *gValue   `parser:"| 'vni' @@"`
	Nesting   string    `parser:"| @( 'inner' | 'outer' )"`
}

// gWord is a protocol word, alone or qualifying a primitive as tcpdump
// writes them: 'tcp port 80', 'ip6 src host ::1'.
type gWord struct {
	Word string   `parser:"@( 'tcp' | 'udp' | 'icmp' | 'icmp6' | 'sctp' | 'ip' | 'ip6' )"`
	Addr *gAddr   `parser:"( @@"`
	Dir  *gDirVal `parser:"| @@ )?"`
}

// gDirVal is tcpdump's 'src 10.0.0.1': a direction and an address, with
// host (or net, for a network) implied.
type gDirVal struct {
	Dir *gDir   `parser:"@@"`
	Val *gValue `parser:"@@"`
}

type gTunnel struct {
	Kw   string  `parser:"@'tunnel'"`
	Type *gValue `parser:"@@?"`
}

type gAddr struct {
	Dir  *gDir   `parser:"@@?"`
	Kind string  `parser:"@( 'host' | 'net' | 'port' | 'portrange' )"`
	Val  *gValue `parser:"@@"`
	Mask *gValue `parser:"( 'mask' @@ )?"`
}

type gIPProto struct {
	Version string  `parser:"@( 'ip' | 'ip6' )?"`
	Val     *gProto `parser:"'proto' @@"`
}

// gProto is a protocol value: a number, a name, or a protocol keyword.
type gProto struct {
	Pos lexer.Position
	Tok lexer.Token `parser:"@(Int | Ident | 'tcp' | 'udp' | 'icmp' | 'icmp6' | 'sctp')"`
}

type gEther struct {
	Dir  *gDir   `parser:"@@?"`
	Host bool    `parser:"@'host'?"`
	Val  *gValue `parser:"@@"`
}

type gVlan struct {
	Kw  string  `parser:"@'vlan'"`
	Val *gValue `parser:"@@?"`
}

type gTime struct {
	Kind string  `parser:"@( 'after' | 'before' )"`
	Val  *gValue `parser:"@@"`
}

type gCount struct {
	Kind string  `parser:"@( 'packets' | 'bytes' )"`
	Op   string  `parser:"@( '>=' | '<=' | '==' | '!=' | '>' | '<' | '=' )"`
	Val  *gValue `parser:"@@"`
}

var parser = sync.OnceValue(func() *participle.Parser[gOr] {
	return participle.MustBuild[gOr](
		participle.Lexer(filterLexer()),
		participle.Elide("ws"),
		participle.CaseInsensitive("Ident", "Keyword"),
		participle.UseLookahead(4),
	)
})

// keywords are the reserved words of the language.
var keywords = map[string]bool{
	"and": true, "or": true, "not": true, "flow": true, "host": true, "net": true, "mask": true,
	"port": true, "portrange": true, "proto": true, "tcp": true, "udp": true, "icmp": true, "icmp6": true,
	"sctp": true, "ip": true, "ip6": true, "vlan": true, "ether": true, "src": true, "dst": true,
	"after": true, "before": true, "packets": true, "bytes": true, "community": true,
	"tunnel": true, "vni": true, "inner": true, "outer": true,
}

// IsKeyword reports whether s is a reserved word of the language (any
// case). The command line uses it to tell filter words from capture files.
func IsKeyword(s string) bool { return keywords[strings.ToLower(s)] }
