// Package nsqpub publishes to the nsqd that Consul lists on this node (or
// any passing one), following changes, and returns only once nsqd
// acknowledged a message. With copies > 1 each message also goes to other
// nsqd instances: a host lost with its nsqd then loses no message that
// another nsqd holds (consumers de-duplicate).
package nsqpub

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/nsqlog"
	"github.com/loopstock/loopstock/internal/nsqname"
	"github.com/loopstock/loopstock/internal/nsqtls"
)

// Publisher publishes to one topic. It is not safe for concurrent use.
type Publisher struct {
	node    func() string // this host's Consul node name ("" until known)
	watch   *discovery.Watch
	topic   string
	timeout time.Duration
	copies  int
	log     *logrus.Entry

	// The targets are picked again only when Consul's instances or the node
	// name change, not per message.
	pickedFor  <-chan struct{}
	pickedNode string
	targets    []discovery.Instance // nil: pick again
	addrs      []string             // the targets' TCP addresses

	// Auth is how the publisher proves itself to nsqd (TLS and AUTH);
	// set it before the first Publish. The zero value is plaintext.
	Auth nsqtls.Client

	producers map[string]*nsq.Producer // by nsqd TCP address
	current   atomic.Value             // string: the nsqd in use, for health reports
}

// New returns a publisher to topic on the nsqd instances watch follows;
// timeout bounds the wait for one acknowledgement.
func New(node func() string, watch *discovery.Watch, topic string, timeout time.Duration, log *logrus.Entry) *Publisher {
	return NewCopies(node, watch, topic, timeout, 1, log)
}

// NewCopies is New publishing each message to copies nsqd instances (as
// many as are passing, the local one first; at most 8).
func NewCopies(node func() string, watch *discovery.Watch, topic string, timeout time.Duration, copies int, log *logrus.Entry) *Publisher {
	return &Publisher{node: node, watch: watch, topic: topic, timeout: timeout, copies: min(max(copies, 1), 8), log: log,
		producers: map[string]*nsq.Producer{}}
}

// Addr is the nsqd in use ("" when none); with copies, every one, the
// first taking the original.
func (p *Publisher) Addr() string {
	s, _ := p.current.Load().(string)
	return s
}

var errNoNSQD = errors.New("no passing nsqd in consul")

// Targets are the nsqd instances a message goes to now. The slice is the
// publisher's own: read it, do not keep it.
func (p *Publisher) Targets() ([]discovery.Instance, error) {
	list, changed, werr := p.watch.Current()
	if len(list) == 0 {
		p.targets, p.addrs = nil, p.addrs[:0]
		if werr != nil {
			return nil, fmt.Errorf("%w: %v", errNoNSQD, werr)
		}
		return nil, errNoNSQD
	}
	node := p.node()
	if p.targets == nil || changed != p.pickedFor || node != p.pickedNode {
		p.targets = discovery.PickN(list, node, p.copies)
		p.addrs = p.addrs[:0]
		for _, t := range p.targets {
			p.addrs = append(p.addrs, t.Addr())
		}
		p.pickedFor, p.pickedNode = changed, node
		p.closeOthers()
	}
	return p.targets, nil
}

// Publish sends body to every target and waits for their acknowledgements,
// at most timeout. It succeeds once one nsqd acknowledged: a copy that
// failed is logged, and the message is then held by fewer hosts.
func (p *Publisher) Publish(body []byte) error {
	if _, err := p.Targets(); err != nil {
		return err
	}
	done := make(chan *nsq.ProducerTransaction, len(p.addrs))
	var errs []error
	var outstanding uint8 // bit i: waiting for p.addrs[i]
	for i, addr := range p.addrs {
		prod, err := p.producer(addr)
		if err == nil {
			err = prod.PublishAsync(p.topic, body, done, i)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("publish to nsqd %s: %w", addr, err))
			continue
		}
		outstanding |= 1 << i
	}
	acked := 0
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	for outstanding != 0 {
		select {
		case tr := <-done:
			i := tr.Args[0].(int)
			outstanding &^= 1 << i
			if tr.Error != nil {
				errs = append(errs, fmt.Errorf("publish to nsqd %s: %w", p.addrs[i], tr.Error))
			} else {
				acked++
			}
		case <-t.C:
			// An acknowledgement may still come: then nsqd holds the message
			// and a retry publishes it again, which the averager de-duplicates.
			for i, addr := range p.addrs {
				if outstanding&(1<<i) != 0 {
					errs = append(errs, fmt.Errorf("publish to nsqd %s: no acknowledgement within %s", addr, p.timeout))
					p.stop(addr)
				}
			}
			outstanding = 0
		}
	}
	switch {
	case acked == 0:
		return errors.Join(errs...)
	case len(errs) > 0:
		p.log.WithError(errors.Join(errs...)).WithField("acknowledged_by", acked).Warn("a copy of a message was not published: fewer nsqd hold it")
	}
	return nil
}

// producer is the producer for addr, made when there is none (first use,
// or after a timeout closed it).
func (p *Publisher) producer(addr string) (*nsq.Producer, error) {
	if prod := p.producers[addr]; prod != nil {
		return prod, nil
	}
	cfg := nsq.NewConfig()
	cfg.DialTimeout = time.Second
	cfg.WriteTimeout = p.timeout
	p.Auth.Apply(cfg)
	prod, err := nsq.NewProducer(addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("nsq producer for %s: %w", addr, err)
	}
	prod.SetLogger(nsqlog.New(p.log.WithField("nsqd", addr)), nsq.LogLevelWarning)
	p.producers[addr] = prod
	p.current.Store(strings.Join(p.addrs, ","))
	p.log.WithField("nsqd", addr).Info("publishing to nsqd")
	return prod, nil
}

// closeOthers closes the producers of nsqd that are no longer targets.
func (p *Publisher) closeOthers() {
	for addr := range p.producers {
		if !slices.Contains(p.addrs, addr) {
			p.stop(addr)
		}
	}
	p.current.Store(strings.Join(p.addrs, ","))
}

func (p *Publisher) stop(addr string) {
	if prod := p.producers[addr]; prod != nil {
		prod.Stop()
		delete(p.producers, addr)
	}
}

// Stop closes the producers.
func (p *Publisher) Stop() {
	for addr := range p.producers {
		p.stop(addr)
	}
	p.targets, p.addrs = nil, p.addrs[:0]
	p.current.Store("")
}

// ValidName is NSQ's rule for topic and channel names.
func ValidName(s string) bool { return nsqname.Valid(s) }
