package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pcapflow/pcapflow/serve"
)

const serveUsage = `usage: pcapflow serve -i INDEX [--watch DIR] [--listen ADDR] [--token-file FILE]

Answer the archive over HTTP: the API of SPEC.md (/api/flows, /api/count,
/api/explain, /api/extract, /api/streams/ID, /api/timeline) and a web page
at / (docs/serve.md). One process owns the index and answers many clients.

options:
  -i INDEX          the index (with --watch, created if needed)
  --watch DIR       index each capture that appears in DIR once it is
                    complete (renamed into place, or no longer growing),
                    continuing connections across files, while answering
  --listen ADDR     where to listen (default 127.0.0.1:8080); an address
                    that is not loopback needs --token-file
  --token-file FILE every API request must then carry
                    "Authorization: Bearer <the file's first line>"
  --heavy N         requests that read packets at once (default 8); more
                    wait up to 10 s, then get 503 with Retry-After
  --settle D        how long a watched file must not change (default 2s)
`

func runServe(ctx context.Context, e *env, args []string) error {
	var dir, watch, listen, tokenFile string
	var heavy int
	var settle time.Duration
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&dir, "i", "", "")
	fs.StringVar(&watch, "watch", "", "")
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "")
	fs.StringVar(&tokenFile, "token-file", "", "")
	fs.IntVar(&heavy, "heavy", 8, "")
	fs.DurationVar(&settle, "settle", 2*time.Second, "")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("serve takes no arguments but options (got %q)", rest[0])
	}
	if dir == "" {
		return usagef("serve needs -i INDEX")
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return usagef("--listen %q: %v", listen, err)
	}
	token := ""
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		if len(token) < 16 {
			return usagef("--token-file %s: the token is %d characters; use at least 16 (openssl rand -hex 32)", tokenFile, len(token))
		}
	} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usagef("--listen %s is reachable from other machines: give --token-file, or listen on 127.0.0.1", listen)
	}
	if watch != "" {
		if st, err := os.Stat(watch); err != nil || !st.IsDir() {
			return usagef("--watch %s: not a directory", watch)
		}
	}
	srv, err := serve.New(serve.Options{Index: dir, Watch: watch, Token: token, Heavy: heavy, Settle: settle,
		Log: log.New(e.stderr, "pcapflow serve: ", log.LstdFlags)})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		srv.Close()
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(e.stderr, "serving %s on http://%s/\n", dir, ln.Addr())
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		// Graceful: no new connections, requests in flight finish (up to
		// 10 s), the watcher stops after its commit.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = hs.Shutdown(sctx)
		cancel()
	}
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
