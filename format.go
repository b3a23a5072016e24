package pcapflow

import (
	"io"

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
