package pcapflow

import (
	"context"
	"io"
	"iter"

	"github.com/pcapflow/pcapflow/flow"
)

// ListFormat is a format for listing flows and conversations.
type ListFormat = flow.Format

// The listing formats.
const (
	ListText = flow.FormatText // a table for people
	ListSeed = flow.FormatSeed // pcap_flow's line
	ListJSON = flow.FormatJSON // JSON lines (SPEC.md's fields)
	ListCSV  = flow.FormatCSV  // the JSON fields as columns
)

// ListOptions configure a FlowWriter or ConversationWriter.
type ListOptions = flow.WriterOptions

// FlowWriter prints flows; call Flush once at the end.
type FlowWriter = flow.Writer

// ConversationWriter prints conversations; call Flush once at the end.
type ConversationWriter = flow.ConvWriter

// NewFlowWriter returns a writer of flows in format f.
func NewFlowWriter(w io.Writer, f ListFormat, o *ListOptions) (FlowWriter, error) {
	return flow.NewWriter(w, f, o)
}

// NewConversationWriter returns a writer of conversations in format f.
func NewConversationWriter(w io.Writer, f ListFormat, o *ListOptions) (*ConversationWriter, error) {
	return flow.NewConvWriter(w, f, o)
}

// ErrFormat means a listing format is none of the List constants.
var ErrFormat = flow.ErrFormat

// List writes what 'pcapflow flows' prints for q: its flows in format f,
// or with bidir its conversations, then flushes. An unknown format is an
// error wrapping ErrFormat, returned before anything is written.
func (a *Archive) List(ctx context.Context, w io.Writer, q Query, bidir bool, f ListFormat, o *ListOptions) error {
	if bidir {
		cw, err := NewConversationWriter(w, f, o)
		if err != nil {
			return err
		}
		return writeEach(a.Conversations(ctx, q), cw.Write, cw.Flush)
	}
	fw, err := NewFlowWriter(w, f, o)
	if err != nil {
		return err
	}
	return writeEach(a.Flows(ctx, q), fw.Write, fw.Flush)
}

// writeEach writes every item of seq, then flushes; the first error ends it.
func writeEach[T any](seq iter.Seq2[T, error], write func(T) error, flush func() error) error {
	for v, err := range seq {
		if err != nil {
			return err
		}
		if err := write(v); err != nil {
			return err
		}
	}
	return flush()
}

// ListOptions returns options that name the archive's captures, with
// the capture column when it has several.
func (a *Archive) ListOptions() *ListOptions {
	return &ListOptions{CaptureName: a.CaptureName, Captures: len(a.names) > 1}
}

// ProtoName is the name of IP protocol p: tcp, udp, gre, esp...; its
// number when it has none.
func ProtoName(p uint8) string { return flow.ProtoLabel(p) }

// AppendSeed appends pcap_flow's line for f (ListSeed's rows).
func AppendSeed(b []byte, f *Flow) []byte { return flow.AppendSeed(b, f) }
