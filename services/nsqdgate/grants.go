// Package nsqdgate decides who may do what on the nsqd beside it. nsqd
// checks that a client's certificate comes from the cluster's CA; this
// gate says what the holder may do:
//
//   - on nsqd's TCP protocol, as nsqd's auth server (--auth-http-address,
//     on loopback): a client with a certificate of the cluster's CA (nsqd
//     checks its chain) sends its service's secret (AUTH), and gets that
//     secret's grant;
//   - on nsqd's HTTP API, which nsqd never authorizes, as the only way in
//     from the network: an HTTPS listener that checks the client's SPIFFE
//     URI and lets each service through to the few calls it needs, while
//     nsqd's own HTTP listener stays on loopback.
//
// docs/design.md ("Trust") argues the choice.
package nsqdgate

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loopstock/loopstock/internal/nsqname"
)

// Grant is what one service may do on nsqd.
type Grant struct {
	Service string `json:"service"`
	// Secret is what the service sends in AUTH (from a Nomad variable).
	Secret    string         `json:"secret"`
	Publish   []string       `json:"publish,omitempty"`   // topics
	Subscribe []Subscription `json:"subscribe,omitempty"` // topic and channel
	Stats     bool           `json:"stats,omitempty"`     // may read GET /stats
}

// Subscription is a channel of a topic.
type Subscription struct {
	Topic   string `json:"topic"`
	Channel string `json:"channel"`
}

// Grants is the grants file's content: {"grants": [...]}.
type Grants struct {
	Grants []Grant `json:"grants"`
}

// minSecret is the shortest secret accepted.
const minSecret = 16

// ParseGrants reads and checks a grants file; an error names the grant
// and what is wrong.
func ParseGrants(data []byte) (*Grants, error) {
	var g Grants
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("not a grants file ({\"grants\": [{\"service\": …, \"secret\": …, \"publish\": [topics], \"subscribe\": [{\"topic\", \"channel\"}], \"stats\": bool}]}): %w", err)
	}
	if len(g.Grants) == 0 {
		return nil, fmt.Errorf("no grants: nobody could publish or subscribe")
	}
	seen := map[string]bool{}
	for i, gr := range g.Grants {
		at := fmt.Sprintf("grant %d (%q)", i, gr.Service)
		switch {
		case gr.Service == "":
			return nil, fmt.Errorf("grant %d: no service", i)
		case seen[gr.Service]:
			return nil, fmt.Errorf("%s: the service has two grants", at)
		case len(gr.Secret) < minSecret:
			return nil, fmt.Errorf("%s: secret shorter than %d characters", at, minSecret)
		}
		seen[gr.Service] = true
		for _, t := range gr.Publish {
			if !nsqname.Valid(t) {
				return nil, fmt.Errorf("%s: publish topic %q is not a valid NSQ name", at, t)
			}
		}
		for _, s := range gr.Subscribe {
			if !nsqname.Valid(s.Topic) || !nsqname.Valid(s.Channel) {
				return nil, fmt.Errorf("%s: subscription %q/%q is not a valid NSQ topic and channel", at, s.Topic, s.Channel)
			}
		}
		for _, o := range g.Grants[:i] {
			if subtle.ConstantTimeCompare([]byte(o.Secret), []byte(gr.Secret)) == 1 {
				return nil, fmt.Errorf("%s: same secret as %q: each service needs its own", at, o.Service)
			}
		}
	}
	return &g, nil
}

// bySecret is the grant whose secret is secret, compared in constant time
// with every grant's.
func (g *Grants) bySecret(secret string) (Grant, bool) {
	var found Grant
	ok := false
	for _, gr := range g.Grants {
		if subtle.ConstantTimeCompare([]byte(gr.Secret), []byte(secret)) == 1 {
			found, ok = gr, true
		}
	}
	return found, ok
}

func (g *Grants) byService(service string) (Grant, bool) {
	for _, gr := range g.Grants {
		if gr.Service == service {
			return gr, true
		}
	}
	return Grant{}, false
}

// channelOf tells whether channel of topic is one some service subscribes
// to: the only channels a publisher may create.
func (g *Grants) channelOf(topic, channel string) bool {
	for _, gr := range g.Grants {
		if slices.Contains(gr.Subscribe, Subscription{topic, channel}) {
			return true
		}
	}
	return false
}

// authorizations is the grant in nsqd's auth-server terms.
func (gr Grant) authorizations() []authorization {
	exact := func(s string) string { return "^" + regexp.QuoteMeta(s) + "$" }
	var out []authorization
	for _, t := range gr.Publish {
		// nsqd matches a publish's empty channel against the channel list.
		out = append(out, authorization{Topic: exact(t), Channels: []string{".*"}, Permissions: []string{"publish"}})
	}
	for _, s := range gr.Subscribe {
		out = append(out, authorization{Topic: exact(s.Topic), Channels: []string{exact(s.Channel)}, Permissions: []string{"subscribe"}})
	}
	return out
}

// grantsFile is a grants file read again when it changes (Nomad renders
// it from its variables; a rotated secret needs no restart).
type grantsFile struct {
	path string

	mu     sync.Mutex
	mod    time.Time
	size   int64
	grants *Grants
}

func loadGrantsFile(path string) (*grantsFile, error) {
	f := &grantsFile{path: path}
	if _, err := f.current(); err != nil {
		return nil, err
	}
	return f, nil
}

// current is the file's grants; a file changed into something unusable
// keeps the last good grants and is an error.
func (f *grantsFile) current() (*Grants, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err == nil && f.grants != nil && fi.ModTime().Equal(f.mod) && fi.Size() == f.size {
		return f.grants, nil
	}
	if err == nil {
		if fi.Mode().Perm()&0o077 != 0 {
			err = fmt.Errorf("it holds secrets and is readable by others (mode %#o): make it 0600", fi.Mode().Perm())
		}
	}
	var g *Grants
	if err == nil {
		var data []byte
		if data, err = os.ReadFile(f.path); err == nil {
			g, err = ParseGrants(data)
		}
	}
	if err != nil {
		err = fmt.Errorf("grants file %s: %w", f.path, err)
		if f.grants != nil {
			return f.grants, err
		}
		return nil, err
	}
	f.grants, f.mod, f.size = g, fi.ModTime(), fi.Size()
	return g, nil
}

// httpAllowed says whether service may make the nsqd HTTP call, and why
// not.
func (g *Grants) httpAllowed(service, method, path string, q url.Values) (bool, string) {
	gr, ok := g.byService(service)
	if !ok {
		return false, "service " + service + " has no grant on nsqd"
	}
	topic, channel := q.Get("topic"), q.Get("channel")
	switch {
	case method == "GET" && path == "/ping":
		return true, ""
	case method == "GET" && path == "/stats":
		if gr.Stats {
			return true, ""
		}
		return false, service + " may not read /stats"
	case method == "POST" && path == "/topic/create":
		if slices.Contains(gr.Publish, topic) {
			return true, ""
		}
		return false, fmt.Sprintf("%s may not create topic %q: it publishes only to %v", service, topic, gr.Publish)
	case method == "POST" && path == "/channel/create":
		if slices.Contains(gr.Publish, topic) && g.channelOf(topic, channel) {
			return true, ""
		}
		return false, fmt.Sprintf("%s may not create channel %q of topic %q: only a publisher of the topic may, and only a channel a service subscribes to", service, channel, topic)
	}
	return false, fmt.Sprintf("%s %s is not an nsqd call any service may make through the gate", method, path)
}
