// Package integerapi is integer-api: the only writer of the window store
// (Redis, found through Consul) and the HTTP API that serves the averages.
package integerapi

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/tlsid"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// CacheTTL bounds how stale a read may be: a window written through
// another instance is served within this.
const CacheTTL = 100 * time.Millisecond

// Limits of a request.
const (
	DefaultLimit = 10
	MaxLimit     = 100
	maxBody      = 1 << 20
	maxPieces    = 10000
)

// Handler serves the API. Extra serves paths it does not know (the
// runtime's /health and /metrics); nil means 404.
type Handler struct {
	store   Store
	cache   *cache
	mux     *http.ServeMux
	routes  map[string]string // mux pattern → route label of the metrics
	token   []byte
	log     *logrus.Entry
	m       *metrics
	Extra   http.Handler
	timeout time.Duration
	// Writers, when set, are the services whose client certificate a write
	// must come with (on the mutual-TLS listener), besides the token.
	Writers []string
}

// NewHandler returns the API over store; writes need token.
func NewHandler(store Store, token string, reg prometheus.Registerer, log *logrus.Entry) *Handler {
	h := &Handler{store: store, token: []byte(token), log: log, m: newMetrics(reg), timeout: 3 * time.Second}
	h.cache = newCache(store, CacheTTL, h.firstServed)
	h.mux, h.routes = http.NewServeMux(), map[string]string{}
	// Go's method patterns match methods exactly; a GET pattern also
	// serves HEAD. The labels are the routes' names in the metrics.
	for _, r := range []struct {
		pattern, label string
		serve          http.HandlerFunc
	}{
		{"GET /{$}", "/", h.index},
		{"GET /v1/integers", "/v1/integers", h.list},
		{"GET /v1/integers/last", "/v1/integers/last", h.last},
		{"GET /v1/integers/{start}", "/v1/integers/{start}", h.one},
		{"PUT /v1/integers/{start}", "/v1/integers/{start}", h.put},
		{"GET /health", "/health", h.extra},
		{"GET /metrics", "/metrics", h.extra},
	} {
		h.mux.HandleFunc(r.pattern, r.serve)
		h.routes[r.pattern] = r.label
	}
	return h
}

// firstServed records how long after its end a window became readable here.
func (h *Handler) firstServed(w windowapi.Window, at time.Time) {
	lag := at.Sub(w.End)
	h.m.serveLag.Observe(lag.Seconds())
	h.log.WithFields(logrus.Fields{"window": w.Start.Format(time.RFC3339Nano), "end": w.End.Format(time.RFC3339Nano),
		"lag_ms": lag.Milliseconds()}).Debug("window first served")
}

// ServeHTTP routes with Go's method patterns, with JSON errors throughout.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	_, pattern := h.mux.Handler(r)
	label, ok := h.routes[pattern]
	if ok {
		h.mux.ServeHTTP(rw, r)
	} else {
		label = h.noRoute(rw, r)
	}
	h.m.observe(label, rw.status, time.Since(start))
}

// noRoute answers what the mux has no handler for: 405 with Allow when the
// path exists with other methods, 404 otherwise, or the mux's redirect to
// a clean path. It returns the route label for the metrics.
func (h *Handler) noRoute(w http.ResponseWriter, r *http.Request) string {
	ans := &answer{header: http.Header{}}
	h.mux.ServeHTTP(ans, r) // the mux's own answer, for its status and Allow
	switch ans.status {
	case http.StatusMethodNotAllowed:
		allow := ans.header.Get("Allow")
		w.Header().Set("Allow", allow)
		label := "unknown"
		alt := *r // the route under one of its allowed methods
		alt.Method, _, _ = strings.Cut(allow, ",")
		if _, p := h.mux.Handler(&alt); h.routes[p] != "" {
			label = h.routes[p]
		}
		writeError(w, http.StatusMethodNotAllowed, windowapi.CodeMethod,
			fmt.Sprintf("%s is not allowed on %s: use %s", r.Method, r.URL.Path, allow))
		return label
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, windowapi.CodeNotFound,
			fmt.Sprintf("no such path %q: see GET / for the endpoints", r.URL.Path))
	default: // a redirect to the cleaned path
		for k, v := range ans.header {
			w.Header()[k] = v
		}
		w.WriteHeader(ans.status)
	}
	return "unknown"
}

// answer keeps the status and headers of a response and drops its body.
type answer struct {
	header http.Header
	status int
}

func (a *answer) Header() http.Header { return a.header }
func (a *answer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}
func (a *answer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return len(b), nil
}

// extra serves /health and /metrics through Extra.
func (h *Handler) extra(w http.ResponseWriter, r *http.Request) {
	if h.Extra == nil {
		writeError(w, http.StatusNotFound, windowapi.CodeNotFound, fmt.Sprintf("no %s here", r.URL.Path))
		return
	}
	h.Extra.ServeHTTP(w, r)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, windowapi.Error{Code: code, Message: msg})
}

// statusClientGone is recorded (as nginx does) for a request whose client
// left before the answer was ready: not the store's failure.
const statusClientGone = 499

// storeError answers a store failure: 503 while Redis is unreachable.
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		w.WriteHeader(statusClientGone)
		return
	}
	h.m.storeErrors.Inc()
	if errors.Is(err, ErrNotReplicated) {
		h.m.unreplicated.Inc()
		h.log.WithError(err).Warn("write not acknowledged: not yet on a replica")
		writeError(w, http.StatusServiceUnavailable, windowapi.CodeUnavailable,
			"the write reached the Redis primary but no replica in time, so it is not acknowledged; send it again (the store merges repeats once)")
		return
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		h.log.WithError(err).Warn("store unavailable")
		writeError(w, http.StatusServiceUnavailable, windowapi.CodeUnavailable, "the window store (Redis) is unreachable; retry shortly")
		return
	}
	h.log.WithError(err).Error("store error")
	writeError(w, http.StatusInternalServerError, "internal", err.Error())
}

// Endpoints is the index served at GET /.
var Endpoints = map[string]string{
	"GET /v1/integers":         "the last windows, newest first (?limit=1..100, default 10); ?before={start} pages back through history, and a full page's Link header (rel=next) names the next one",
	"GET /v1/integers/last":    "the newest window (404 when there is none yet)",
	"GET /v1/integers/{start}": "the window that starts at {start} (RFC 3339; 404 when none is stored)",
	"PUT /v1/integers/{start}": "store a window (integeraverage-cal only; needs the write token)",
	"GET /health":              "health (503 when the store is unreachable)",
	"GET /metrics":             "Prometheus metrics",
	"GET / (a browser)":        "a page that plots the recent windows",
}

//go:embed page.html
var page []byte

// index serves the page that plots the windows to browsers, and the list of
// endpoints to everything else (curl, JSON clients).
func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	if wantsHTML(r.Header.Get("Accept")) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// Everything the page needs is in it: nothing is fetched from elsewhere.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'")
		w.Write(page)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"service": Name, "endpoints": Endpoints})
}

// wantsHTML is true when text/html is acceptable and preferred to JSON
// (browsers list it first; JSON clients and curl's */* do not).
func wantsHTML(accept string) bool {
	html, json := strings.Index(accept, "text/html"), strings.Index(accept, "application/json")
	return html >= 0 && (json < 0 || html < json)
}

// list serves the newest windows from the cache, and older pages
// (?before=) from the store. A full page links to the next one.
func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	limit := DefaultLimit
	q := r.URL.Query()
	for k := range q {
		if k != "limit" && k != "before" {
			writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, fmt.Sprintf("unknown parameter %q: the parameters are limit and before", k))
			return
		}
	}
	if s := q.Get("limit"); s != "" || q.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, fmt.Sprintf("limit=%q: want a whole number from 1 to %d", s, MaxLimit))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	if !q.Has("before") {
		snap, err := h.cache.get(ctx)
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		if len(snap.windows) >= limit {
			w.Header().Set("Link", nextLink(snap.windows[limit-1].Start, limit))
		}
		writeBody(w, http.StatusOK, snap.listJSON(limit))
		return
	}
	s := q.Get("before")
	before, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest,
			fmt.Sprintf("before=%q is not an RFC 3339 time: give the start of the oldest window of the page before (e.g. 2026-01-02T15:04:05Z)", s))
		return
	}
	ws, err := h.store.Before(ctx, before, limit)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	if len(ws) == limit {
		w.Header().Set("Link", nextLink(ws[limit-1].Start, limit))
	}
	writeJSON(w, http.StatusOK, ws)
}

// nextLink is the Link header of the page after one whose oldest window
// starts at oldest.
func nextLink(oldest time.Time, limit int) string {
	q := url.Values{"before": {oldest.UTC().Format(windowapi.TimeFormat)}, "limit": {strconv.Itoa(limit)}}
	return "</v1/integers?" + q.Encode() + `>; rel="next"`
}

// one serves the window that starts at {start}.
func (h *Handler) one(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, "/v1/integers/{start} takes no parameters")
		return
	}
	start, msg := parseStart(r.PathValue("start"))
	if msg != "" {
		writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	win, ok, err := h.store.Get(ctx, start)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, windowapi.CodeNotFound, fmt.Sprintf(
			"no window starts at %s: starts are multiples of the window length, and windows older than the retention are gone (GET /v1/integers lists the stored ones)",
			start.Format(windowapi.TimeFormat)))
		return
	}
	writeJSON(w, http.StatusOK, win)
}

// parseStart reads a window start from the path, or says what is wrong.
func parseStart(raw string) (time.Time, string) {
	start, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, fmt.Sprintf("window start %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", raw)
	}
	if start.UnixMilli() <= 0 || start.Nanosecond()%int(time.Millisecond) != 0 {
		return time.Time{}, fmt.Sprintf("window start %q: must be after 1970 and a whole millisecond", raw)
	}
	return start, ""
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}

func (h *Handler) last(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, "/v1/integers/last takes no parameters")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	snap, err := h.cache.get(ctx)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	body := snap.lastJSON()
	if body == nil {
		writeError(w, http.StatusNotFound, windowapi.CodeNotFound, "no window stored yet: the first appears about one window length after the generators start")
		return
	}
	writeBody(w, http.StatusOK, body)
}

func (h *Handler) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), h.token) == 1
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request) {
	if h.Writers != nil {
		id, ok := tlsid.PeerIdentity(r.TLS)
		if !ok {
			writeError(w, http.StatusForbidden, windowapi.CodeForbidden,
				"window writes are accepted only on integer-api's mutual-TLS listener (its Consul meta write_port), with the certificate of "+strings.Join(h.Writers, " or "))
			return
		}
		if !slices.Contains(h.Writers, id.Service) {
			writeError(w, http.StatusForbidden, windowapi.CodeForbidden, "service "+id.Service+" may not write windows")
			return
		}
	}
	if !h.authorized(r) {
		writeError(w, http.StatusUnauthorized, windowapi.CodeUnauthorized, "window writes need the header Authorization: Bearer <write token>")
		return
	}
	start, msg := parseStart(r.PathValue("start"))
	if msg != "" {
		writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, msg)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, windowapi.CodeTooLarge, fmt.Sprintf("body over %d bytes", maxBody))
		return
	}
	var wr windowapi.Write
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wr); err != nil {
		writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, "body is not a window write: "+err.Error())
		return
	}
	if msg := validateWrite(start, wr); msg != "" {
		writeError(w, http.StatusBadRequest, windowapi.CodeBadRequest, msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	res, err := h.store.Put(ctx, start, wr)
	h.cache.invalidate() // whatever happened, the next read asks the store
	if errors.Is(err, ErrStaleFence) {
		h.m.staleWrites.Inc()
		writeError(w, http.StatusConflict, windowapi.CodeStaleFence, err.Error()+": a newer averager leader has written; this one must step down")
		return
	}
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	if res.Created {
		h.m.windowsCreated.Inc()
	} else {
		for _, p := range res.Pieces {
			if p == windowapi.Added {
				h.m.windowsAmended.Inc()
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func validateWrite(start time.Time, wr windowapi.Write) string {
	if !wr.End.After(start) || wr.End.Sub(start) > 24*time.Hour || wr.End.Nanosecond()%int(time.Millisecond) != 0 {
		return "end must be after start by at most 24h, a whole millisecond"
	}
	if len(wr.Pieces) == 0 || len(wr.Pieces) > maxPieces {
		return fmt.Sprintf("a write has 1..%d pieces, this one %d", maxPieces, len(wr.Pieces))
	}
	for i, p := range wr.Pieces {
		if b, err := hex.DecodeString(p.Instance); err != nil || len(b) != 16 {
			return fmt.Sprintf("pieces[%d].instance %q: want 32 hex digits", i, p.Instance)
		}
		if p.LastSeq < p.FirstSeq || p.LastSeq-p.FirstSeq >= 1<<32 {
			return fmt.Sprintf("pieces[%d]: last_seq %d before first_seq %d (or too far)", i, p.LastSeq, p.FirstSeq)
		}
		if p.FirstSeq >= 1<<53 || p.LastSeq >= 1<<53 {
			return fmt.Sprintf("pieces[%d]: sequence numbers must stay below 2^53", i)
		}
		if p.Count != int64(p.LastSeq-p.FirstSeq)+1 {
			return fmt.Sprintf("pieces[%d].count %d: sequence %d..%d holds %d integers", i, p.Count, p.FirstSeq, p.LastSeq, p.LastSeq-p.FirstSeq+1)
		}
		if p.Sum < 0 || p.Sum > p.Count*(1<<31) {
			return fmt.Sprintf("pieces[%d].sum %d out of range for %d integers", i, p.Sum, p.Count)
		}
	}
	return ""
}
