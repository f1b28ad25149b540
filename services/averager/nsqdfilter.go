package averager

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
)

// consulNSQDs keeps, of the nsqd that nsqlookupd names, those registered
// in Consul as nsqd (passing or not): a go-nsq DiscoveryFilter. Anyone on
// the network can register an nsqd with nsqlookupd, and go-nsq starts TLS
// only when the server offers it, so an impostor there would get the
// subscription, and the secret, in plaintext. Registering nsqd in Consul
// takes Nomad's ACL token. The consumer still follows nsqlookupd, which
// finds a restarted nsqd as soon as it registers; one that Consul does not
// list yet is refused until a later poll.
type consulNSQDs struct {
	registered *discovery.Watch
	refused    prometheus.Counter
	log        *logrus.Entry

	mu     sync.Mutex
	logged map[string]bool // addresses refused and logged, once each
}

func newConsulNSQDs(registered *discovery.Watch, refused prometheus.Counter, log *logrus.Entry) *consulNSQDs {
	return &consulNSQDs{registered: registered, refused: refused, log: log, logged: map[string]bool{}}
}

// Filter is called by go-nsq with nsqlookupd's answer (host:port of each
// nsqd's TCP listener, as nsqd broadcasts it).
func (f *consulNSQDs) Filter(addrs []string) []string {
	list, _, _ := f.registered.Current()
	known := make(map[string]bool, len(list))
	for _, i := range list {
		known[i.Addr()] = true
	}
	kept := addrs[:0:0]
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range addrs {
		if known[a] {
			kept = append(kept, a)
			delete(f.logged, a)
			continue
		}
		f.refused.Inc()
		if !f.logged[a] {
			f.logged[a] = true
			f.log.WithField("nsqd", a).Warn("nsqlookupd names an nsqd that Consul does not list: not connecting (an impostor, or a registration Consul has not seen yet; retried at every nsqlookupd poll)")
		}
	}
	return kept
}
