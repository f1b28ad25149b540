package averager

import (
	"net/http"
	"net/http/pprof"
)

// profile serves CPU and heap profiles next to /metrics, so that what
// limits the averager can be seen where it runs (make bench reads them).
func profile(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.Handle("GET /debug/pprof/heap", pprof.Handler("heap"))
}
