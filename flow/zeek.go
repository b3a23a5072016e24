package flow

import "github.com/pcapflow/pcapflow/pcapio"

// Zeek's TCP endpoint states, as used by its conn_state function.
type epState uint8

const (
	epInactive epState = iota
	epSynSent
	epSynAckSent
	epPartial
	epEstablished
	epClosed
	epReset
)

// conn is the state two flows of one connection share.
type conn struct {
	serial  uint64   // order of creation among connections; 0: a free slot
	flows   [2]int32 // flow slot of side 0 (first seen) and side 1, -1 if none
	origIdx uint8    // which side is Zeek's originator
	flipped bool     // the first packet came from the responder
	ended   bool     // a FIN or RST was seen
	state   [2]epState
	sawData [2]bool
	seen    [2]uint16 // history letters already recorded, per side
	history [22]byte
	histLen uint8
	proto   uint8
	// base is each side's initial sequence number: a SYN's, or one less
	// than the first segment's when no SYN was seen (as Wireshark does).
	base    [2]uint32
	hasBase [2]bool
}

// Zeek history letters, in the bit order of conn.seen.
const historyLetters = "SHADFRWIQ"

const (
	hSyn = 1 << iota
	hSynAck
	hAck
	hData
	hFin
	hRst
	hZeroWin
	hInconsistent
	hMultiFlag
)

func (c *conn) note(side int, bit uint16) {
	if c.seen[side]&bit != 0 {
		return
	}
	c.seen[side] |= bit
	if int(c.histLen) >= len(c.history) {
		return
	}
	i := 0
	for bit>>i != 1 {
		i++
	}
	l := historyLetters[i]
	if side != int(c.origIdx) {
		l += 'a' - 'A'
	}
	c.history[c.histLen] = l
	c.histLen++
}

// tcp advances the Zeek endpoint states for a segment sent by side.
func (c *conn) tcp(side int, p *pcapio.Packet) {
	other := 1 - side
	f := p.TCPFlags
	if !c.hasBase[side] {
		c.hasBase[side] = true
		c.base[side] = p.Seq
		if f&pcapio.TCPSyn == 0 {
			c.base[side]--
		}
	}
	syn, ack, fin, rst := f&pcapio.TCPSyn != 0, f&pcapio.TCPAck != 0, f&pcapio.TCPFin != 0, f&pcapio.TCPRst != 0
	switch {
	case syn && (fin || rst):
		c.note(side, hMultiFlag)
	case syn && ack:
		c.note(side, hSynAck)
	case syn:
		c.note(side, hSyn)
	}
	if syn && rst {
		c.note(side, hInconsistent)
	}
	if p.PayloadLen > 0 {
		c.note(side, hData)
		c.sawData[side] = true
	} else if ack && !syn && !fin && !rst {
		c.note(side, hAck)
	}
	if fin {
		c.note(side, hFin)
	}
	if rst {
		c.note(side, hRst)
	}
	if p.Window == 0 && !rst && !syn && p.HasTCPHeader {
		c.note(side, hZeroWin)
	}
	s := &c.state[side]
	switch {
	case rst:
		*s = epReset
		c.ended = true
	case fin:
		if *s != epReset {
			*s = epClosed
		}
		c.ended = true
	case syn && !ack:
		if *s == epInactive {
			*s = epSynSent
		}
	case syn && ack:
		if *s == epInactive || *s == epSynSent {
			*s = epSynAckSent
		}
	default:
		switch *s {
		case epInactive:
			if c.state[other] == epSynSent || c.state[other] == epSynAckSent {
				*s = epEstablished
			} else {
				*s = epPartial
			}
		case epSynSent, epSynAckSent:
			*s = epEstablished
		}
		if *s == epEstablished && (c.state[other] == epSynSent || c.state[other] == epSynAckSent) {
			c.state[other] = epEstablished
		}
	}
}

// closed reports whether the connection is over: a RST, or a FIN from
// each side. Its flows then end after Options.CloseTimeout of silence.
func (c *conn) closed() bool {
	return c.state[0] == epReset || c.state[1] == epReset || (c.state[0] == epClosed && c.state[1] == epClosed)
}

// zeekState is Zeek's conn_state for the connection.
func (c *conn) zeekState() State {
	o, r := c.state[c.origIdx], c.state[1-c.origIdx]
	oInactive := o == epInactive || o == epPartial
	rInactive := r == epInactive || r == epPartial
	switch c.proto {
	case pcapio.ProtoTCP:
		switch {
		case r == epReset:
			if o == epSynSent || o == epSynAckSent || (o == epReset && !c.sawData[0] && !c.sawData[1]) {
				return StateREJ
			}
			if oInactive {
				return StateRSTRH
			}
			return StateRSTR
		case o == epReset:
			if rInactive {
				if c.seen[c.origIdx]&hSyn != 0 && c.seen[c.origIdx]&^(hSyn|hRst|hZeroWin) == 0 {
					return StateRSTOS0
				}
				return StateOTH
			}
			return StateRSTO
		case r == epClosed && o == epClosed:
			return StateSF
		case o == epClosed:
			if rInactive {
				return StateSH
			}
			return StateS2
		case r == epClosed:
			if oInactive {
				return StateSHR
			}
			return StateS3
		case o == epSynSent && r == epInactive:
			return StateS0
		case o == epEstablished && r == epEstablished:
			return StateS1
		}
		return StateOTH
	case pcapio.ProtoUDP:
		oActive, rActive := c.flows[c.origIdx] >= 0, c.flows[1-c.origIdx] >= 0
		switch {
		case oActive && rActive:
			return StateSF
		case oActive:
			return StateS0
		case rActive:
			return StateSHR
		}
	}
	return StateOTH
}

func (c *conn) zeekHistory() History {
	var h History
	if c.flipped {
		h.b[0], h.n = '^', 1
	}
	h.n += uint8(copy(h.b[h.n:], c.history[:c.histLen]))
	return h
}
