// Package serve answers questions about a pcapflow archive over HTTP:
// the JSON and capture-byte API of SPEC.md ("Serve"), the web page at /
// (embedded, it works offline), and, with a watched directory, the
// indexing of each capture that appears there while queries go on.
//
// One Server owns the index and answers many clients at once. Each
// request works on the archive as last committed; an index run that
// commits swaps in the new archive for the requests that start after it,
// and the old one is closed when the last request using it ends.
package serve

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pcapflow/pcapflow"
)

// Options configure a Server.
type Options struct {
	// Index is the index directory. With Watch it is created if needed
	// and the server adds to it; without, it is opened read-only.
	Index string
	// Watch is a directory whose captures are indexed as they appear
	// (see watch.go); "" for none.
	Watch string
	// Settle is how long a watched file must stay the same size before
	// it is taken as complete (0: 2 s). A file renamed into place is
	// complete when it appears, and is taken at the next scan.
	Settle time.Duration
	// Token, when set, must come with every API request as
	// "Authorization: Bearer TOKEN".
	Token string
	// Heavy bounds the requests that read packets or many flows at once
	// (extract, streams, follow, flows, timeline); beyond it a request
	// waits up to QueueWait for a turn, then gets 503 with Retry-After.
	// 0 means 8.
	Heavy     int
	QueueWait time.Duration // 0: 10 s
	// Timeout bounds the time of one request (0: 5 minutes); a client
	// that hangs up cancels its request at once.
	Timeout time.Duration
	// MaxRows bounds the rows of one /api/flows answer (0: 1,000,000);
	// every answer says it in X-Pcapflow-Max-Rows, and a client pages
	// with offset beyond it.
	MaxRows int
	// MaxFilter bounds the length of a filter (0: 4096 bytes).
	MaxFilter int
	// Log receives what the server does on its own (watched captures
	// indexed, failures); nil discards it.
	Log *log.Logger
}

// Server serves one archive.
type Server struct {
	opts   Options
	heavy  chan struct{}
	counts countCache
	mux    *http.ServeMux
	mu     sync.Mutex
	cur    *ref
	indexr *pcapflow.Indexer // with Watch
	watch  *watcher
	cancel context.CancelFunc
	done   chan struct{}
}

// ref is an archive and the requests using it.
type ref struct {
	a      *pcapflow.Archive
	users  int
	retire bool // replaced: close when the last user is done
}

// New opens the archive (or the index to watch into) and returns a
// server; Close stops it.
func New(opts Options) (*Server, error) {
	if opts.Heavy <= 0 {
		opts.Heavy = 8
	}
	if opts.QueueWait <= 0 {
		opts.QueueWait = 10 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = 1_000_000
	}
	if opts.MaxFilter <= 0 {
		opts.MaxFilter = 4096
	}
	if opts.Settle <= 0 {
		opts.Settle = 2 * time.Second
	}
	s := &Server{opts: opts, heavy: make(chan struct{}, opts.Heavy), done: make(chan struct{})}
	if opts.Watch != "" {
		ix, err := pcapflow.OpenIndexer(opts.Index, &pcapflow.IndexOptions{Warn: s.logf, KeepSettings: true})
		if err != nil {
			return nil, err
		}
		s.indexr = ix
		if a, err := ix.Archive(); err == nil {
			s.cur = &ref{a: a}
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.watch = newWatcher(s, opts.Watch, opts.Settle)
		go func() {
			defer close(s.done)
			s.watch.run(ctx)
		}()
	} else {
		a, err := pcapflow.Open(opts.Index)
		if err != nil {
			return nil, err
		}
		s.cur = &ref{a: a}
		close(s.done)
	}
	s.routes()
	return s, nil
}

func (s *Server) logf(err error) {
	if s.opts.Log != nil {
		s.opts.Log.Print(err)
	}
}

// Close stops watching, waits for an index run in progress to commit or
// stop, and closes the archive once no request uses it.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	<-s.done
	s.mu.Lock()
	cur := s.cur
	s.cur = nil
	if cur != nil {
		cur.retire = true
		if cur.users == 0 {
			cur.a.Close()
		}
	}
	s.mu.Unlock()
	if s.indexr != nil {
		return s.indexr.Close()
	}
	return nil
}

// errNoArchive is the answer before the first capture is indexed.
var errNoArchive = errors.New("nothing indexed yet")

// acquire returns the current archive and a function to release it.
func (s *Server) acquire() (*pcapflow.Archive, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.cur
	if r == nil {
		return nil, nil, errNoArchive
	}
	r.users++
	return r.a, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		r.users--
		if r.retire && r.users == 0 {
			r.a.Close()
		}
	}, nil
}

// swap makes a the archive of the requests that start from now on.
func (s *Server) swap(a *pcapflow.Archive) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur
	s.cur = &ref{a: a}
	if old != nil {
		old.retire = true
		if old.users == 0 {
			old.a.Close()
		}
	}
}

// ServeHTTP answers a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if strings.HasPrefix(r.URL.Path, "/api/") && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pcapflow"`)
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong token (Authorization: Bearer TOKEN)"), -1)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorized compares the bearer token in constant time. The page and
// its scripts are public (they hold no data); every API request needs
// the token when there is one.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

// turn waits for a heavy-request slot; ok is false (and 503 sent) when
// none came within QueueWait.
func (s *Server) turn(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	t := time.NewTimer(s.opts.QueueWait)
	defer t.Stop()
	select {
	case s.heavy <- struct{}{}:
		return func() { <-s.heavy }, true
	case <-t.C:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("busy: %d heavy requests running; retry later", cap(s.heavy)), -1)
		return nil, false
	case <-r.Context().Done():
		return nil, false
	}
}
