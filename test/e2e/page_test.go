package e2e

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// chromium finds Debian's chromium; make test installs it and sets
// LOOPSTOCK_REQUIRE_CHROMIUM, so there a missing browser is a failure.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LOOPSTOCK_REQUIRE_CHROMIUM") != "" {
		t.Fatal("chromium is not installed: apt-get install chromium (make test does it)")
	}
	t.Skip("chromium is not installed")
	return ""
}

var point = regexp.MustCompile(`<circle [^>]*data-start="([^"]+)" data-average="([^"]+)" data-count="([^"]+)"`)

// checkPage loads the API's page in headless Chromium, lets its script run,
// and checks that the plot shows the windows the API serves.
func checkPage(t *testing.T, api string) {
	browser := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", api+"/").Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	var served []windowapi.Window
	if code, err := testenv.GetJSON(api+"/v1/integers?limit=60", &served); err != nil || code != 200 {
		t.Fatalf("API: %d %v", code, err)
	}
	byStart := map[string]windowapi.Window{}
	for _, w := range served {
		byStart[w.Start.Format(windowapi.TimeFormat)] = w
	}
	points := point.FindAllStringSubmatch(string(out), -1)
	if len(points) == 0 {
		t.Fatalf("the page plots no window:\n%.2000s", out)
	}
	// The page may be a refresh behind the API: at most one window fewer.
	if len(points) < len(served)-1 {
		t.Errorf("the page plots %d windows, the API serves %d", len(points), len(served))
	}
	for _, p := range points {
		w, ok := byStart[p[1]]
		if !ok {
			t.Errorf("the page plots a window %s that the API does not serve", p[1])
			continue
		}
		avg, _ := strconv.ParseFloat(p[2], 64)
		count, _ := strconv.ParseInt(p[3], 10, 64)
		if avg != w.Average || count != w.Count {
			t.Errorf("window %s: the page plots average %v count %d, the API serves %v and %d", p[1], avg, count, w.Average, w.Count)
		}
	}
}
