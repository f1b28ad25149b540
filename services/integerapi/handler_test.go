package integerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// memStore is an in-process Store for handler tests.
type memStore struct {
	windows []windowapi.Window // newest first
	err     error
	lastPut *windowapi.Write
}

func (s *memStore) Latest(_ context.Context, n int) ([]windowapi.Window, error) {
	if s.err != nil {
		return nil, s.err
	}
	return s.windows[:min(n, len(s.windows))], nil
}

func (s *memStore) Before(_ context.Context, before time.Time, n int) ([]windowapi.Window, error) {
	if s.err != nil {
		return nil, s.err
	}
	out := []windowapi.Window{}
	for _, w := range s.windows {
		if w.Start.Before(before) && len(out) < n {
			out = append(out, w)
		}
	}
	return out, nil
}

func (s *memStore) Get(_ context.Context, start time.Time) (windowapi.Window, bool, error) {
	if s.err != nil {
		return windowapi.Window{}, false, s.err
	}
	for _, w := range s.windows {
		if w.Start.Equal(start) {
			return w, true, nil
		}
	}
	return windowapi.Window{}, false, nil
}

func (s *memStore) Put(_ context.Context, start time.Time, w windowapi.Write) (windowapi.WriteResult, error) {
	if s.err != nil {
		return windowapi.WriteResult{}, s.err
	}
	s.lastPut = &w
	res := windowapi.WriteResult{Created: true}
	res.Start, res.End = start, w.End
	for _, p := range w.Pieces {
		res.Count += p.Count
		res.Sum += p.Sum
		res.Pieces = append(res.Pieces, windowapi.Added)
	}
	return res, nil
}

func (s *memStore) Ping(context.Context) error { return s.err }

const token = "test-token-123"

func windows(n int) []windowapi.Window {
	out := make([]windowapi.Window, n)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range out {
		s := base.Add(-time.Duration(i) * 5 * time.Second)
		out[i] = windowapi.Window{Start: s, End: s.Add(5 * time.Second), Count: 100, Sum: int64(100 * (i + 1)), Average: float64(i + 1)}
	}
	return out
}

func serve(t *testing.T, s Store, method, target, body string, hdr ...string) (*httptest.ResponseRecorder, windowapi.Error) {
	t.Helper()
	h := NewHandler(s, token, prometheus.NewRegistry(), logging.Discard())
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e windowapi.Error
	if rec.Code >= 400 {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: error with Content-Type %q", method, target, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("%s %s: error body %q is not {code, message}", method, target, rec.Body.String())
		}
	}
	return rec, e
}

func TestListReturnsTheLastTenNewestFirst(t *testing.T) {
	rec, _ := serve(t, &memStore{windows: windows(30)}, "GET", "/v1/integers", "")
	var got []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if len(got) != 10 {
		t.Fatalf("%d windows, want 10", len(got))
	}
	if got[0]["start"] != "2026-01-01T00:00:00Z" || got[0]["end"] != "2026-01-01T00:00:05Z" || got[0]["average"] != 1.0 || got[0]["count"] != 100.0 {
		t.Fatalf("first item %v", got[0])
	}
}

func TestListLimit(t *testing.T) {
	s := &memStore{windows: windows(150)}
	for _, c := range []struct {
		q    string
		code int
		n    int
	}{{"?limit=1", 200, 1}, {"?limit=100", 200, 100}, {"?limit=0", 400, 0}, {"?limit=101", 400, 0},
		{"?limit=abc", 400, 0}, {"?limit=", 400, 0}, {"?limit=-3", 400, 0}, {"?limt=5", 400, 0}} {
		rec, e := serve(t, s, "GET", "/v1/integers"+c.q, "")
		if rec.Code != c.code {
			t.Errorf("%s: %d, want %d (%s)", c.q, rec.Code, c.code, rec.Body)
			continue
		}
		if c.code == 400 && e.Code != windowapi.CodeBadRequest {
			t.Errorf("%s: code %q", c.q, e.Code)
		}
		if c.code == 200 {
			var got []any
			json.Unmarshal(rec.Body.Bytes(), &got)
			if len(got) != c.n {
				t.Errorf("%s: %d items, want %d", c.q, len(got), c.n)
			}
		}
	}
}

func TestEmptyStore(t *testing.T) {
	rec, _ := serve(t, &memStore{}, "GET", "/v1/integers", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("list on empty store: %d %q", rec.Code, rec.Body)
	}
	rec, e := serve(t, &memStore{}, "GET", "/v1/integers/last", "")
	if rec.Code != 404 || e.Code != windowapi.CodeNotFound {
		t.Fatalf("last on empty store: %d %+v", rec.Code, e)
	}
}

func TestLast(t *testing.T) {
	rec, _ := serve(t, &memStore{windows: windows(3)}, "GET", "/v1/integers/last", "")
	var w windowapi.Window
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &w) != nil || w.Average != 1 || w.Count != 100 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec, _ := serve(t, &memStore{windows: windows(3)}, "GET", "/v1/integers/last?x=1", ""); rec.Code != 400 {
		t.Errorf("parameters on /last: %d", rec.Code)
	}
}

func TestUnknownPathAndWrongMethod(t *testing.T) {
	s := &memStore{windows: windows(1)}
	if rec, e := serve(t, s, "GET", "/v2/nothing", ""); rec.Code != 404 || e.Code != windowapi.CodeNotFound {
		t.Errorf("unknown path: %d %+v", rec.Code, e)
	}
	if rec, e := serve(t, s, "GET", "/v1/integers/a/b", ""); rec.Code != 404 || e.Code != windowapi.CodeNotFound {
		t.Errorf("nested path: %d %+v", rec.Code, e)
	}
	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/v1/integers", "GET, HEAD"}, {"DELETE", "/v1/integers/last", "GET, HEAD, PUT"},
		{"DELETE", "/v1/integers/2026-01-01T00:00:00Z", "GET, HEAD, PUT"}, {"PUT", "/", "GET, HEAD"},
	} {
		rec, e := serve(t, s, c.method, c.path, "")
		if rec.Code != 405 || e.Code != windowapi.CodeMethod || rec.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d %+v Allow=%q", c.method, c.path, rec.Code, e, rec.Header().Get("Allow"))
		}
	}
}

func TestIndex(t *testing.T) {
	rec, _ := serve(t, &memStore{}, "GET", "/", "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "/v1/integers/last") || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	for _, accept := range []string{"application/json", "*/*", "application/json, text/html"} {
		if rec, _ := serve(t, &memStore{}, "GET", "/", "", "Accept", accept); rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("Accept %q got %s", accept, rec.Header().Get("Content-Type"))
		}
	}
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	rec, _ = serve(t, &memStore{}, "GET", "/", "", "Accept", browser)
	body := rec.Body.String()
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(body, `id="plot"`) {
		t.Fatalf("a browser got %s: %.80s", rec.Header().Get("Content-Type"), body)
	}
	// Nothing from outside: no external script, style, font or image.
	for _, ref := range []string{"src=\"http", "href=\"http", "@import", "url(http", "//cdn"} {
		if strings.Contains(body, ref) {
			t.Errorf("the page refers to something outside: %s", ref)
		}
	}
}

func TestStoreDownIs503(t *testing.T) {
	s := &memStore{err: fmt.Errorf("%w: dial tcp: connection refused", ErrUnavailable)}
	for _, p := range []string{"/v1/integers", "/v1/integers/last"} {
		if rec, e := serve(t, s, "GET", p, ""); rec.Code != 503 || e.Code != windowapi.CodeUnavailable {
			t.Errorf("%s: %d %+v", p, rec.Code, e)
		}
	}
	rec, e := serve(t, s, "PUT", "/v1/integers/2026-01-01T00:00:00Z", validWrite, "Authorization", "Bearer "+token)
	if rec.Code != 503 || e.Code != windowapi.CodeUnavailable {
		t.Errorf("put: %d %+v", rec.Code, e)
	}
}

// A write the replica did not confirm is not acknowledged: 503, saying to
// send it again.
func TestUnreplicatedWriteIs503(t *testing.T) {
	s := &memStore{err: fmt.Errorf("%w: 0 of 1 replicas had it within 500ms", ErrNotReplicated)}
	rec, e := serve(t, s, "PUT", "/v1/integers/2026-01-01T00:00:00Z", validWrite, "Authorization", "Bearer "+token)
	if rec.Code != 503 || e.Code != windowapi.CodeUnavailable || !strings.Contains(e.Message, "no replica") || !strings.Contains(e.Message, "send it again") {
		t.Errorf("put: %d %+v", rec.Code, e)
	}
}

const validWrite = `{"end":"2026-01-01T00:00:05Z","fence":3,"pieces":[{"instance":"0102030405060708090a0b0c0d0e0f10","first_seq":5,"last_seq":6,"count":2,"sum":30}]}`

func TestPutNeedsTheToken(t *testing.T) {
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", token}} {
		rec, e := serve(t, &memStore{}, "PUT", "/v1/integers/2026-01-01T00:00:00Z", validWrite, hdr...)
		if rec.Code != 401 || e.Code != windowapi.CodeUnauthorized {
			t.Errorf("%v: %d %+v", hdr, rec.Code, e)
		}
	}
}

func TestPutStoresAValidWrite(t *testing.T) {
	s := &memStore{}
	rec, _ := serve(t, s, "PUT", "/v1/integers/2026-01-01T00:00:00Z", validWrite, "Authorization", "Bearer "+token)
	var res windowapi.WriteResult
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &res) != nil || res.Count != 2 || res.Sum != 30 || !res.Created {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if s.lastPut == nil || s.lastPut.Fence != 3 {
		t.Fatalf("store got %+v", s.lastPut)
	}
}

func TestPutRejectsBadWrites(t *testing.T) {
	piece := func(p string) string {
		return `{"end":"2026-01-01T00:00:05Z","fence":1,"pieces":[` + p + `]}`
	}
	cases := map[string]struct{ path, body string }{
		"start not a time": {"/v1/integers/yesterday", validWrite},
		"not json":         {"/v1/integers/2026-01-01T00:00:00Z", "{"},
		"unknown field":    {"/v1/integers/2026-01-01T00:00:00Z", `{"end":"2026-01-01T00:00:05Z","pieces":[],"extra":1}`},
		"no pieces":        {"/v1/integers/2026-01-01T00:00:00Z", `{"end":"2026-01-01T00:00:05Z","pieces":[]}`},
		"end before start": {"/v1/integers/2026-01-01T00:00:10Z", validWrite},
		"bad instance":     {"/v1/integers/2026-01-01T00:00:00Z", piece(`{"instance":"xyz","first_seq":1,"last_seq":1,"count":1,"sum":1}`)},
		"count mismatch":   {"/v1/integers/2026-01-01T00:00:00Z", piece(`{"instance":"0102030405060708090a0b0c0d0e0f10","first_seq":1,"last_seq":2,"count":5,"sum":1}`)},
		"reversed seqs":    {"/v1/integers/2026-01-01T00:00:00Z", piece(`{"instance":"0102030405060708090a0b0c0d0e0f10","first_seq":3,"last_seq":2,"count":1,"sum":1}`)},
		"negative sum":     {"/v1/integers/2026-01-01T00:00:00Z", piece(`{"instance":"0102030405060708090a0b0c0d0e0f10","first_seq":1,"last_seq":1,"count":1,"sum":-1}`)},
	}
	for name, c := range cases {
		s := &memStore{}
		rec, e := serve(t, s, "PUT", c.path, c.body, "Authorization", "Bearer "+token)
		if rec.Code != 400 || e.Code != windowapi.CodeBadRequest {
			t.Errorf("%s: %d %+v", name, rec.Code, e)
		}
		if s.lastPut != nil {
			t.Errorf("%s: reached the store", name)
		}
	}
	big := `{"end":"2026-01-01T00:00:05Z","pieces":[` + strings.Repeat(" ", maxBody) + `]}`
	if rec, e := serve(t, &memStore{}, "PUT", "/v1/integers/2026-01-01T00:00:00Z", big, "Authorization", "Bearer "+token); rec.Code != 413 || e.Code != windowapi.CodeTooLarge {
		t.Errorf("oversized: %d %+v", rec.Code, e)
	}
}

func TestStaleFenceIs409(t *testing.T) {
	s := &memStore{err: fmt.Errorf("%w: fence 3 below 9", ErrStaleFence)}
	rec, e := serve(t, s, "PUT", "/v1/integers/2026-01-01T00:00:00Z", validWrite, "Authorization", "Bearer "+token)
	if rec.Code != 409 || e.Code != windowapi.CodeStaleFence {
		t.Fatalf("%d %+v", rec.Code, e)
	}
}

func TestRequestsAreCountedByRouteAndStatus(t *testing.T) {
	h := NewHandler(&memStore{windows: windows(3)}, token, prometheus.NewRegistry(), logging.Discard())
	for _, target := range []string{"/v1/integers", "/v1/integers", "/v1/integers?limit=0", "/nope"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", target, nil))
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{{"/v1/integers", "200", 2}, {"/v1/integers", "400", 1}, {"unknown", "404", 1}} {
		if got := testutil.ToFloat64(h.m.requests.WithLabelValues(c.route, c.code)); got != c.want {
			t.Errorf("requests{route=%q,code=%q} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(h.m.latency); n != 2 {
		t.Errorf("%d latency series, want 2 (one per route)", n)
	}
}

// Methods match exactly: a method that is part of an allowed one's name is
// not that method.
func TestMethodsMatchExactly(t *testing.T) {
	s := &memStore{windows: windows(3)}
	for _, c := range []struct{ method, path string }{
		{"GE", "/v1/integers"}, {"G", "/v1/integers/last"}, {"ET", "/"}, {"HEA", "/v1/integers"},
		{"PU", "/v1/integers/2026-01-01T00:00:00Z"}, {"get", "/v1/integers"},
	} {
		rec, e := serve(t, s, c.method, c.path, validWrite, "Authorization", "Bearer "+token)
		if rec.Code != 405 || e.Code != windowapi.CodeMethod || rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: %d %+v Allow=%q; want 405 method_not_allowed with Allow", c.method, c.path, rec.Code, e, rec.Header().Get("Allow"))
		}
	}
}

func TestHistoryRequestsSayWhatIsWrong(t *testing.T) {
	s := &memStore{windows: windows(30)}
	for _, c := range []struct {
		target, code, says string
		status             int
	}{
		{"/v1/integers?before=yesterday", windowapi.CodeBadRequest, "RFC 3339", 400},
		{"/v1/integers?before=2026-01-01T00:00:00Z&limit=0", windowapi.CodeBadRequest, "limit", 400},
		{"/v1/integers?before=2026-01-01T00:00:00Z&page=2", windowapi.CodeBadRequest, "limit and before", 400},
		{"/v1/integers/yesterday", windowapi.CodeBadRequest, "RFC 3339", 400},
		{"/v1/integers/2026-01-01T00:00:00.0005Z", windowapi.CodeBadRequest, "whole millisecond", 400},
		{"/v1/integers/2026-01-01T00:00:00Z?x=1", windowapi.CodeBadRequest, "no parameters", 400},
		{"/v1/integers/2026-01-01T00:00:01Z", windowapi.CodeNotFound, "no window starts at 2026-01-01T00:00:01Z", 404},
		{"/v1/integers/", windowapi.CodeNotFound, "no such path", 404},
	} {
		rec, e := serve(t, s, "GET", c.target, "")
		if rec.Code != c.status || e.Code != c.code || !strings.Contains(e.Message, c.says) {
			t.Errorf("GET %s: %d %+v; want %d %s saying %q", c.target, rec.Code, e, c.status, c.code, c.says)
		}
	}
	down := &memStore{err: fmt.Errorf("%w: connection refused", ErrUnavailable)}
	for _, p := range []string{"/v1/integers?before=2026-01-01T00:00:00Z", "/v1/integers/2026-01-01T00:00:00Z"} {
		if rec, e := serve(t, down, "GET", p, ""); rec.Code != 503 || e.Code != windowapi.CodeUnavailable {
			t.Errorf("%s with the store down: %d %+v", p, rec.Code, e)
		}
	}
}

func TestAFullPageLinksToTheNext(t *testing.T) {
	s := &memStore{windows: windows(30)}
	rec, _ := serve(t, s, "GET", "/v1/integers?limit=10", "")
	want := `</v1/integers?before=2025-12-31T23%3A59%3A15Z&limit=10>; rel="next"` // the 10th window's start
	if got := rec.Header().Get("Link"); got != want {
		t.Fatalf("Link %q, want %q", got, want)
	}
	rec, _ = serve(t, s, "GET", "/v1/integers?before=2025-12-31T23:59:15Z&limit=25", "")
	var ws []windowapi.Window
	if err := json.Unmarshal(rec.Body.Bytes(), &ws); err != nil || len(ws) != 20 || !ws[0].Start.Equal(windows(30)[10].Start) {
		t.Fatalf("the page before the 10th window: %d windows %v (%v); want 20 from the 11th", len(ws), ws, err)
	}
	if l := rec.Header().Get("Link"); l != "" {
		t.Errorf("the last page links on: %q", l)
	}
}
