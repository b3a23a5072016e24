package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pcapflow/pcapflow"
	"github.com/pcapflow/pcapflow/export"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /api/flows", s.api(true, s.flows))
	m.HandleFunc("GET /api/count", s.api(false, s.count))
	m.HandleFunc("GET /api/explain", s.api(false, s.explain))
	m.HandleFunc("GET /api/extract", s.api(true, s.extract))
	m.HandleFunc("GET /api/streams/{id}", s.api(true, s.streams))
	m.HandleFunc("GET /api/streams", s.api(true, s.streamsOf))
	m.HandleFunc("GET /api/follow/{id}", s.api(true, s.follow))
	m.HandleFunc("GET /api/timeline", s.api(true, s.timeline))
	m.HandleFunc("GET /api/status", s.api(false, s.status))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such API: %s %s", r.Method, r.URL.Path), -1)
	})
	m.Handle("/", pageHandler())
	s.mux = m
}

// apiError is an error with its HTTP status.
type apiError struct {
	status int
	err    error
	offset int // of a filter error, else -1
}

func (e *apiError) Error() string { return e.err.Error() }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Errorf(format, args...), -1}
}

// api wraps a handler: the archive, the time limit, the heavy-request
// bound, and errors as JSON. A handler that has begun its body cannot
// send an error any more; it stops, and the client sees a cut body.
func (s *Server) api(heavy bool, h func(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.Timeout)
		defer cancel()
		if heavy {
			release, ok := s.turn(w, r)
			if !ok {
				return
			}
			defer release()
		}
		a, release, err := s.acquire()
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err, -1)
			return
		}
		defer release()
		sw := &startedWriter{ResponseWriter: w}
		err = h(ctx, a, sw, r.WithContext(ctx))
		if err == nil || sw.started {
			return
		}
		var ae *apiError
		var se *pcapflow.SyntaxError
		switch {
		case errors.As(err, &ae):
			writeError(w, ae.status, ae.err, ae.offset)
		case errors.As(err, &se):
			writeError(w, http.StatusBadRequest, err, se.Offset)
		case errors.Is(err, pcapflow.ErrNoFlow):
			writeError(w, http.StatusNotFound, err, -1)
		case errors.Is(err, context.DeadlineExceeded):
			writeError(w, http.StatusGatewayTimeout, fmt.Errorf("the request took longer than %v", s.opts.Timeout), -1)
		case errors.Is(err, context.Canceled):
			// the client left
		default:
			writeError(w, http.StatusInternalServerError, err, -1)
		}
	}
}

// startedWriter notes whether the body has begun.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

func (w *startedWriter) WriteHeader(code int) {
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeError(w http.ResponseWriter, status int, err error, offset int) {
	body := map[string]any{"error": err.Error()}
	if offset >= 0 {
		body["offset"] = offset
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// filter reads the filter parameter, parsed.
func (s *Server) filter(r *http.Request) (pcapflow.Expr, error) {
	f := r.URL.Query().Get("filter")
	if len(f) > s.opts.MaxFilter {
		return nil, badRequest("the filter is %d bytes long; at most %d", len(f), s.opts.MaxFilter)
	}
	return pcapflow.Parse(f)
}

func intParam(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || (max > 0 && n > max) {
		return 0, badRequest("%s=%q: want a whole number from 0 to %d", name, v, max)
	}
	return n, nil
}

func boolParam(r *http.Request, name string) bool {
	switch r.URL.Query().Get(name) {
	case "1", "true", "yes":
		return true
	}
	return false
}

func timeParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, badRequest("%s=%q: want an RFC 3339 time", name, v)
	}
	return t, nil
}

func flowID(a *pcapflow.Archive, r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		return 0, badRequest("flow ID %q: want a number from 1", r.PathValue("id"))
	}
	if id > a.NumFlows() {
		return 0, fmt.Errorf("flow %d (the archive has %d): %w", id, a.NumFlows(), pcapflow.ErrNoFlow)
	}
	return id, nil
}

// query reads the parameters of /api/flows.
func (s *Server) query(r *http.Request) (pcapflow.Query, error) {
	e, err := s.filter(r)
	if err != nil {
		return pcapflow.Query{}, err
	}
	q := pcapflow.Query{Expr: e, Sort: pcapflow.SortKey(r.URL.Query().Get("sort")), Reverse: boolParam(r, "reverse")}
	if q.Sort == "" {
		q.Sort = pcapflow.SortID
	}
	valid := false
	for _, k := range pcapflow.SortKeys {
		valid = valid || k == q.Sort
	}
	if !valid {
		return q, badRequest("sort=%q: want id, first, last, packets, bytes or duration", q.Sort)
	}
	if q.Offset, err = intParam(r, "offset", 0, 0); err != nil {
		return q, err
	}
	if q.Limit, err = intParam(r, "limit", 0, 0); err != nil {
		return q, err
	}
	return q, nil
}

// flows answers the lines of flows -F json (or --bidir -F json).
func (s *Server) flows(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	q, err := s.query(r)
	if err != nil {
		return err
	}
	// At most MaxRows rows; the header says where the cut is, so that a
	// client that gets exactly that many knows to page on (offset).
	if q.Limit == 0 || q.Limit > s.opts.MaxRows {
		q.Limit = s.opts.MaxRows
	}
	w.Header().Set("X-Pcapflow-Max-Rows", strconv.Itoa(s.opts.MaxRows))
	// format= gives the command's other listings, byte for byte, so that
	// pcapflow flows -i URL prints what it prints on the sensor.
	format := pcapflow.ListFormat(r.URL.Query().Get("format"))
	if format == "" {
		format = pcapflow.ListJSON
	}
	lo := a.ListOptions()
	if tz := r.URL.Query().Get("tz"); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return badRequest("tz=%q: %v", tz, err)
		}
		lo.Location = loc
	}
	if format == pcapflow.ListJSON {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	if format == "zeek" {
		return s.zeek(ctx, a, w, q)
	}
	err = a.List(ctx, w, q, boolParam(r, "bidir"), format, lo)
	if errors.Is(err, pcapflow.ErrFormat) {
		return badRequest("format=%q: %v", format, err)
	}
	return err
}

// count answers the object of count -F json.
func (s *Server) count(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	e, err := s.filter(r)
	if err != nil {
		return err
	}
	c, err := s.counts.get(ctx, a, e, s.opts.Timeout)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(c)
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (s *Server) explain(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	e, err := s.filter(r)
	if err != nil {
		return err
	}
	p, err := a.Explain(ctx, pcapflow.Query{Expr: e})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"filter": p.Filter, "source": p.Source, "steps": p.Steps, "matching": p.Matching})
}

// extract answers the bytes extract writes, streamed.
func (s *Server) extract(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	e, err := s.filter(r)
	if err != nil {
		return err
	}
	var o pcapflow.ExtractOptions
	if o.Window.From, err = timeParam(r, "from"); err != nil {
		return err
	}
	if o.Window.To, err = timeParam(r, "to"); err != nil {
		return err
	}
	ids, err := a.IDs(ctx, pcapflow.Query{Expr: e})
	if err != nil {
		return err
	}
	name, ext := "extract", "pcap"
	if a.OutputFormat() == pcapflow.FormatPcapNG {
		ext = "pcapng"
	}
	if len(ids) == 1 {
		name = fmt.Sprintf("flow%d", ids[0])
	}
	switch r.URL.Query().Get("format") {
	case "":
	case "pcap":
		o.Format, ext = pcapflow.FormatPcap, "pcap"
	case "pcapng":
		o.Format, ext = pcapflow.FormatPcapNG, "pcapng"
	default:
		return badRequest("format=%q: want pcap or pcapng", r.URL.Query().Get("format"))
	}
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, name, ext))
	w.Header().Set("X-Pcapflow-Flows", strconv.Itoa(len(ids)))
	w.Header().Set("Trailer", "X-Pcapflow-Packets")
	bw := bufio.NewWriterSize(w, 256<<10)
	n, err := a.Extract(ctx, bw, ids, &o)
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	w.Header().Set("X-Pcapflow-Packets", strconv.FormatInt(n, 10))
	return nil
}

// streams answers the bytes streams -w writes for one flow.
func (s *Server) streams(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	id, err := flowID(a, r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="flow%d.stream"`, id))
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := a.WriteStreams(ctx, bw, []uint64{id}, &pcapflow.StreamOptions{Header: boolParam(r, "tcpheader")}); err != nil {
		return err
	}
	return bw.Flush()
}

// streamsOf answers the bytes streams -w writes for the flows a filter
// selects (tcpheader=1 frames them).
func (s *Server) streamsOf(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	e, err := s.filter(r)
	if err != nil {
		return err
	}
	ids, err := a.IDs(ctx, pcapflow.Query{Expr: e})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Pcapflow-Flows", strconv.Itoa(len(ids)))
	w.Header().Set("Trailer", "X-Pcapflow-Streams, X-Pcapflow-Stats")
	bw := bufio.NewWriterSize(w, 256<<10)
	res, err := a.WriteStreams(ctx, bw, ids, &pcapflow.StreamOptions{Header: boolParam(r, "tcpheader")})
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	t := res.Totals
	w.Header().Set("X-Pcapflow-Streams", strconv.Itoa(res.Streams))
	w.Header().Set("X-Pcapflow-Stats", fmt.Sprintf("%d %d %d %d %d %d", t.Delivered, t.Gaps, t.MissingBytes, t.RetransBytes, t.ConflictBytes, res.Skipped))
	return nil
}

// follow answers a conversation's chunks for the page's follow view, at
// most max bytes of data (default 1 MiB).
func (s *Server) follow(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	id, err := flowID(a, r)
	if err != nil {
		return err
	}
	max, err := intParam(r, "max", 1<<20, 64<<20)
	if err != nil {
		return err
	}
	conv, chunks := a.Follow(ctx, id, nil)
	var out []FollowChunk
	total, truncated := 0, false
	for c, err := range chunks {
		if err != nil {
			return err
		}
		ch := FollowChunk{FromB: c.FromB, Offset: c.Offset, Missing: c.Missing}
		if c.Missing == 0 {
			d := c.Data
			if total+len(d) > max {
				d, truncated = d[:max-total], true
			}
			total += len(d)
			ch.Time = c.Time.Format(time.RFC3339Nano)
			ch.Data = d
		}
		out = append(out, ch)
		if truncated {
			break
		}
	}
	k := &conv.A.Key
	body := FollowAnswer{
		Conv: conv.ID, Proto: pcapflow.ProtoName(k.Proto),
		A: endpoint(k.SrcAddr().String(), k.SrcPort), B: endpoint(k.DstAddr().String(), k.DstPort),
		Flows: flowsOf(conv), Chunks: out, Truncated: truncated,
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(body)
}

// FollowAnswer is the body of /api/follow/ID: a conversation as
// Wireshark's Follow TCP Stream shows it. The page and `follow -i URL`
// read it.
type FollowAnswer struct {
	Conv      uint64        `json:"conv"`
	Proto     string        `json:"proto"`
	A         string        `json:"a"` // the side that spoke first, address:port
	B         string        `json:"b"`
	Flows     []uint64      `json:"flows"`
	Chunks    []FollowChunk `json:"chunks"`
	Truncated bool          `json:"truncated"` // cut at the max= bytes of data
}

// FollowChunk is a run of one side's bytes, or a gap (Missing bytes the
// capture does not have).
type FollowChunk struct {
	FromB   bool   `json:"from_b"`
	Offset  uint64 `json:"offset"`
	Time    string `json:"time,omitempty"`
	Data    []byte `json:"data,omitempty"` // base64 in JSON
	Missing uint64 `json:"missing,omitempty"`
}

func flowsOf(c *pcapflow.Conversation) []uint64 {
	if c.B == nil {
		return []uint64{c.A.ID}
	}
	return []uint64{c.A.ID, c.B.ID}
}

func endpoint(a string, p uint16) string {
	if strings.Contains(a, ":") {
		return "[" + a + "]:" + strconv.Itoa(int(p))
	}
	return a + ":" + strconv.Itoa(int(p))
}

// timeline answers packets and bytes per time bucket of the flows that
// match. Each flow's packets and bytes are spread evenly over the
// buckets its lifetime covers: a view of where traffic lies in time that
// costs one pass over the flow records, not a read of every packet.
func (s *Server) timeline(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	e, err := s.filter(r)
	if err != nil {
		return err
	}
	n, err := intParam(r, "buckets", 100, 10000)
	if err != nil {
		return err
	}
	n = max(n, 1)
	type span struct {
		first, last    int64
		packets, bytes uint64
	}
	var spans []span
	lo, hi := int64(1<<63-1), int64(-1<<63)
	for f, err := range a.Flows(ctx, pcapflow.Query{Expr: e}) {
		if err != nil {
			return err
		}
		spans = append(spans, span{f.First, f.Last, f.Packets, f.Bytes})
		lo, hi = min(lo, f.First), max(hi, f.Last)
	}
	packets, bytes := make([]float64, n), make([]float64, n)
	width := int64(1)
	if len(spans) > 0 {
		width = max(1, (hi-lo)/int64(n)+1)
		for _, sp := range spans {
			b0, b1 := int((sp.first-lo)/width), int((sp.last-lo)/width)
			k := float64(b1 - b0 + 1)
			for b := b0; b <= b1; b++ {
				packets[b] += float64(sp.packets) / k
				bytes[b] += float64(sp.bytes) / k
			}
		}
	} else {
		lo, hi = 0, 0
	}
	round := func(x []float64) []uint64 {
		out := make([]uint64, len(x))
		for i, v := range x {
			out[i] = uint64(v + 0.5)
		}
		return out
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{
		"start": time.Unix(0, lo).UTC().Format(time.RFC3339Nano), "end": time.Unix(0, hi).UTC().Format(time.RFC3339Nano),
		"bucket_ns": width, "flows": len(spans), "packets": round(packets), "bytes": round(bytes),
	})
}

// status says what the server holds.
func (s *Server) status(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, r *http.Request) error {
	type capture struct {
		Name    string `json:"name"`
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
		First   string `json:"first,omitempty"`
		Last    string `json:"last,omitempty"`
	}
	var caps []capture
	for _, c := range a.Captures() {
		x := capture{Name: c.Name, Packets: c.Packets, Bytes: c.Bytes}
		if c.First != 0 {
			x.First = time.Unix(0, c.First).UTC().Format(time.RFC3339Nano)
			x.Last = time.Unix(0, c.Last).UTC().Format(time.RFC3339Nano)
		}
		caps = append(caps, x)
	}
	body := map[string]any{"flows": a.NumFlows(), "captures": caps, "settings": settingsJSON(a.Settings())}
	// What the command line says on stderr before every answer: captures
	// cut short, damaged (indexed up to the damage) or grown since they
	// were indexed. Every answer stands on what was read of them.
	warnings := a.Warnings()
	var ce pcapflow.CaptureErrors
	if errors.As(a.Err(), &ce) {
		for _, e := range ce {
			warnings = append(warnings, e.Error())
		}
	}
	if len(warnings) > 0 {
		body["warnings"] = warnings
	}
	if s.watch != nil {
		body["watching"] = s.opts.Watch
		st := s.watch.state()
		body["indexed"], body["pending"] = st.indexed, st.pending
		if st.lastErr != "" {
			body["last_error"] = st.lastErr
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(body)
}

// settingsJSON is how flows were split: the timeouts as Go durations
// ("10m0s"; "never" for no idle timeout), the tunnel options.
func settingsJSON(set pcapflow.Settings) map[string]any {
	idle := set.IdleTimeout.String()
	if set.IdleTimeout < 0 {
		idle = "never"
	}
	m := map[string]any{"idle_timeout": idle, "close_timeout": set.CloseTimeout.String(), "tunnels": !set.NoTunnels}
	if set.VXLANPorts != nil {
		m["vxlan_ports"] = set.VXLANPorts
	}
	return m
}

// zeek answers the lines of flows -F zeek.
func (s *Server) zeek(ctx context.Context, a *pcapflow.Archive, w http.ResponseWriter, q pcapflow.Query) error {
	return export.WriteConnJSON(ctx, w, a, q, s.sensor())
}

// sensor is the name in exported rows: the host's.
func (s *Server) sensor() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
