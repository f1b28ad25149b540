package integergen

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/nsqtls"
)

// topicPublisher makes sure, before publishing to an nsqd, that the topic
// exists there with the averager's channel. nsqd copies a message only to
// the channels its topic has when the message arrives: with another
// channel first (an nsqadmin tail, an audit), every integer published
// before the averager first subscribed would never reach it.
type topicPublisher struct {
	targetPublisher
	nsqds          *discovery.Watch
	topic, channel string
	client         *http.Client
	auth           nsqtls.Client // with TLS: through nsqd-gate, with the certificate

	ready   map[string]bool // nsqd (Consul service ID) → topic and channel created
	changed <-chan struct{} // the watch's change signal when ready was filled
}

// targetPublisher is a Publisher that says which nsqd a message goes to now
// (nsqpub.Publisher: the local one first, and the others its copies go to).
type targetPublisher interface {
	Publisher
	Targets() ([]discovery.Instance, error)
}

func newTopicPublisher(p targetPublisher, nsqds *discovery.Watch, topic, channel string, auth nsqtls.Client) Publisher {
	if channel == "" {
		return p
	}
	return &topicPublisher{targetPublisher: p, nsqds: nsqds, topic: topic, channel: channel,
		client: auth.HTTPClient(2 * time.Second), auth: auth, ready: map[string]bool{}}
}

func (p *topicPublisher) Publish(body []byte) error {
	_, changed, _ := p.nsqds.Current()
	if changed != p.changed {
		// Consul saw the instances change: an nsqd may be back with an empty data directory.
		clear(p.ready)
		p.changed = changed
	}
	targets, err := p.Targets()
	if err != nil {
		return err
	}
	for _, inst := range targets {
		if p.ready[inst.ID] {
			continue
		}
		if err := p.create(inst); err != nil {
			return err
		}
		p.ready[inst.ID] = true
	}
	return p.targetPublisher.Publish(body)
}

// create creates the topic and the channel through nsqd's HTTP API (both
// calls do nothing when they exist).
func (p *topicPublisher) create(inst discovery.Instance) error {
	meta := p.auth.PortMeta()
	port := inst.Meta[meta]
	if port == "" {
		return errors.New("nsqd " + inst.Addr() + " is registered without meta." + meta + ": cannot create the averager's channel")
	}
	host := inst.Address
	if host == "" {
		host = "127.0.0.1"
	}
	base := p.auth.Scheme() + "://" + net.JoinHostPort(host, port)
	q := url.Values{"topic": {p.topic}, "channel": {p.channel}}.Encode()
	for _, step := range []struct{ what, path string }{{"the topic " + p.topic, "/topic/create?"}, {"the channel " + p.channel, "/channel/create?"}} {
		resp, err := p.client.Post(base+step.path+q, "", nil)
		if err != nil {
			return fmt.Errorf("creating %s on nsqd %s: %w", step.what, base, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("creating %s on nsqd %s: %s", step.what, base, resp.Status)
		}
	}
	return nil
}
