package faults

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// The comparison reads every window the API serves, not only the newest
// page: on a longer run, older windows would otherwise count as lost.
func TestServedReadsEveryPage(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul, redis and integer-api")
	}
	s := testenv.StartStack(t, testenv.StackOptions{APIs: 1})
	s.WaitHealthy(t, 60*time.Second)
	const n = 250
	first := time.Now().Add(-time.Hour).Truncate(windowSize)
	put := func(i int) int {
		start := first.Add(time.Duration(i) * windowSize)
		body, _ := json.Marshal(windowapi.Write{End: start.Add(windowSize), Fence: 1,
			Pieces: []windowapi.Piece{{Instance: "0102030405060708090a0b0c0d0e0f10", FirstSeq: uint64(i), LastSeq: uint64(i), Count: 1, Sum: int64(i)}}})
		req, _ := http.NewRequest(http.MethodPut, "http://"+s.APIAddr+windowapi.Path(start), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testenv.WriteToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ok := func(code int) bool { return code == http.StatusOK || code == http.StatusCreated }
	// The API may pass its check before it has found Redis in Consul.
	testenv.Eventually(t, 30*time.Second, "integer-api to store a window", func() bool { return ok(put(0)) })
	for i := 1; i < n; i++ {
		if code := put(i); !ok(code) {
			t.Fatalf("PUT window %d: %d", i, code)
		}
	}
	f := &faultRun{t: t, s: s}
	served := f.served()
	if len(served) != n {
		t.Fatalf("read %d windows, the API stores %d", len(served), n)
	}
	seen := map[int64]bool{}
	for _, w := range served {
		seen[w.Start.UnixMilli()] = true
	}
	for i := range n {
		if start := first.Add(time.Duration(i) * windowSize); !seen[start.UnixMilli()] {
			t.Fatalf("window %s not read", start.Format(time.TimeOnly))
		}
	}
}
