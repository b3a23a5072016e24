package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pcapflow/pcapflow/serve"
)

// remote is a pcapflow serve that answers in place of a local index:
// -i https://sensor:8080. The command's output is the bytes the server's
// writers produce, so it is what the command prints on the sensor.
type remote struct {
	base  string
	token string
	hc    *http.Client
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// remoteOf returns the remote the flags name, or nil.
func remoteOf(cf *commonFlags) (*remote, error) {
	if !isURL(cf.indexDir) {
		return nil, nil
	}
	tok := os.Getenv("PCAPFLOW_TOKEN")
	if cf.tokenFile != "" {
		b, err := os.ReadFile(cf.tokenFile)
		if err != nil {
			return nil, err
		}
		tok = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return &remote{base: strings.TrimRight(cf.indexDir, "/"), token: tok, hc: &http.Client{}}, nil
}

// get asks the server; an error answer becomes an error that says what
// the server said (and, for 401, where the token comes from).
func (r *remote) get(ctx context.Context, path string, params url.Values) (*http.Response, error) {
	u := r.base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == 200 {
		return resp, nil
	}
	defer resp.Body.Close()
	var body struct {
		Error  string `json:"error"`
		Offset *int   `json:"offset"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	switch {
	case resp.StatusCode == 401:
		return nil, fmt.Errorf("%s: %s (give the token with --token-file FILE or $PCAPFLOW_TOKEN)", r.base, body.Error)
	case resp.StatusCode == 400 && body.Offset != nil:
		f := params.Get("filter")
		return nil, usagef("%s\n  %s\n  %s^", body.Error, f, strings.Repeat(" ", *body.Offset))
	case body.Error != "":
		return nil, fmt.Errorf("%s: %s (HTTP %d)", r.base, body.Error, resp.StatusCode)
	}
	return nil, fmt.Errorf("%s: HTTP %s", r.base, resp.Status)
}

// filterOf is the filter words as the server parses them.
func filterParams(filter string) url.Values {
	v := url.Values{}
	if filter != "" {
		v.Set("filter", filter)
	}
	return v
}

func (r *remote) flows(ctx context.Context, e *env, ff *flowsFlags, filter string) error {
	v := filterParams(filter)
	v.Set("format", ff.format)
	if ff.sortBy != "id" {
		v.Set("sort", ff.sortBy)
	}
	if ff.reverse {
		v.Set("reverse", "1")
	}
	if ff.limit > 0 {
		v.Set("limit", strconv.Itoa(ff.limit))
	}
	if ff.offset > 0 {
		v.Set("offset", strconv.Itoa(ff.offset))
	}
	if ff.bidir {
		v.Set("bidir", "1")
	}
	tz := ff.tz
	if tz == "" {
		tz = os.Getenv("TZ")
	}
	if tz != "" && tz != "local" {
		v.Set("tz", tz)
	}
	resp, err := r.get(ctx, "/api/flows", v)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bw := newBufWriter(e.stdout)
	_, err = io.Copy(bw, resp.Body)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
}

func (r *remote) count(ctx context.Context, e *env, format, filter string) error {
	resp, err := r.get(ctx, "/api/count", filterParams(filter))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	switch format {
	case "json":
		_, err = e.stdout.Write(b)
	case "text":
		var c struct{ Flows, Packets, Bytes uint64 }
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("%s: %w", r.base, err)
		}
		_, err = fmt.Fprintf(e.stdout, "flows %d packets %d bytes %d\n", c.Flows, c.Packets, c.Bytes)
	default:
		return usagef("-F %q: want text or json", format)
	}
	return err
}

func (r *remote) explain(ctx context.Context, e *env, filter string) error {
	resp, err := r.get(ctx, "/api/explain", filterParams(filter))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var p struct {
		Filter   string   `json:"filter"`
		Source   string   `json:"source"`
		Steps    []string `json:"steps"`
		Matching int      `json:"matching"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return fmt.Errorf("%s: %w", r.base, err)
	}
	if p.Filter == "" {
		fmt.Fprintln(e.stdout, "filter: (none: every flow)")
	} else {
		fmt.Fprintf(e.stdout, "filter: %s\n", p.Filter)
	}
	fmt.Fprintf(e.stdout, "source: %s at %s\n", p.Source, r.base)
	fmt.Fprintln(e.stdout, "plan:")
	for _, l := range p.Steps {
		fmt.Fprintln(e.stdout, "  "+l)
	}
	fmt.Fprintf(e.stdout, "matching flows: %d\n", p.Matching)
	return nil
}

// download writes what a request answers to path ("-": standard
// output) through a temporary file renamed into place, as local outputs
// are.
func (r *remote) download(ctx context.Context, e *env, path string, force bool, req string, v url.Values) (*http.Response, int64, error) {
	if path != "-" {
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && !force {
			return nil, 0, usagef("%s exists; use --force to overwrite it", path)
		}
	}
	resp, err := r.get(ctx, req, v)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if path == "-" {
		bw := newBufWriter(e.stdout)
		n, err := io.Copy(bw, resp.Body)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		return resp, n, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, 0, err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	n, err := io.Copy(bw, resp.Body)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return resp, n, err
}

func (r *remote) extract(ctx context.Context, e *env, out, format string, force bool, from, to time.Time, filter string) error {
	v := filterParams(filter)
	if format != "" {
		v.Set("format", format)
	}
	if !from.IsZero() {
		v.Set("from", from.Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		v.Set("to", to.Format(time.RFC3339Nano))
	}
	resp, _, err := r.download(ctx, e, out, force, "/api/extract", v)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "extracted %s packets of %s flows from %s to %s\n", resp.Trailer.Get("X-Pcapflow-Packets"), resp.Header.Get("X-Pcapflow-Flows"), r.base, out)
	return nil
}

func (r *remote) streams(ctx context.Context, e *env, out string, header, force bool, filter string) error {
	v := filterParams(filter)
	if header {
		v.Set("tcpheader", "1")
	}
	resp, n, err := r.download(ctx, e, out, force, "/api/streams", v)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote %s streams from %s to %s: %d bytes\n", resp.Trailer.Get("X-Pcapflow-Streams"), r.base, out, n)
	return nil
}

// follow prints conversations as the local follow does, from the
// server's chunks.
func (r *remote) follow(ctx context.Context, e *env, fw *followWriter, all bool, filter string) error {
	v := filterParams(filter)
	v.Set("bidir", "1")
	v.Set("format", "json")
	resp, err := r.get(ctx, "/api/flows", v)
	if err != nil {
		return err
	}
	var convs []uint64
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var c struct {
			Conv  uint64 `json:"conv"`
			Proto string `json:"proto"`
		}
		if err := dec.Decode(&c); err != nil {
			resp.Body.Close()
			return fmt.Errorf("%s: %w", r.base, err)
		}
		if c.Proto == "tcp" || c.Proto == "udp" {
			convs = append(convs, c.Conv)
		}
	}
	resp.Body.Close()
	if len(convs) == 0 {
		return fmt.Errorf("no TCP or UDP conversation matches %q", filter)
	}
	if len(convs) > 1 && !all {
		e.warn(fmt.Errorf("%d conversations match %q; following the first (conversation %d); --all follows every one", len(convs), filter, convs[0]))
		convs = convs[:1]
	}
	for _, id := range convs {
		resp, err := r.get(ctx, fmt.Sprintf("/api/follow/%d", id), url.Values{"max": {strconv.Itoa(64 << 20)}})
		if err != nil {
			return err
		}
		var c serve.FollowAnswer
		err = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", r.base, err)
		}
		hdr := followHeader{proto: c.Proto, conv: c.Conv, flows: c.Flows, a: c.A, b: c.B}
		fw.begin(hdr)
		for _, ch := range c.Chunks {
			if ch.Missing > 0 {
				fw.missing(ch.FromB, ch.Missing)
				continue
			}
			fw.data(ch.FromB, ch.Offset, ch.Data)
		}
		fw.end()
		if c.Truncated {
			return errors.New("the server cut the conversation at 64 MiB; use streams -w for all of it")
		}
	}
	return fw.w.Flush()
}
