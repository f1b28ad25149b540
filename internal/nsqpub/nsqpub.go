// Package nsqpub publishes to the nsqd that Consul lists on this node (or
// any passing one), following changes, and returns only once nsqd
// acknowledged a message.
package nsqpub

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/nsqio/go-nsq"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/nsqlog"
)

// Publisher publishes to one topic. It is not safe for concurrent use.
type Publisher struct {
	agent   *consul.Agent
	watch   *discovery.Watch
	topic   string
	timeout time.Duration
	log     *logrus.Entry

	node     string
	producer *nsq.Producer
	addr     string
	current  atomic.Value // string: the nsqd in use, for health reports
}

// New returns a publisher to topic on the nsqd instances watch follows;
// timeout bounds the wait for one acknowledgement.
func New(agent *consul.Agent, watch *discovery.Watch, topic string, timeout time.Duration, log *logrus.Entry) *Publisher {
	return &Publisher{agent: agent, watch: watch, topic: topic, timeout: timeout, log: log}
}

// Addr is the nsqd in use ("" when none).
func (p *Publisher) Addr() string {
	s, _ := p.current.Load().(string)
	return s
}

var errNoNSQD = errors.New("no passing nsqd in consul")

func (p *Publisher) target() (string, error) {
	list, _, werr := p.watch.Current()
	if len(list) == 0 {
		if werr != nil {
			return "", fmt.Errorf("%w: %v", errNoNSQD, werr)
		}
		return "", errNoNSQD
	}
	if p.node == "" {
		if n, err := p.agent.NodeName(); err == nil {
			p.node = n
		}
	}
	inst, _ := discovery.Pick(list, p.node)
	return inst.Addr(), nil
}

// Publish sends body and waits for nsqd's acknowledgement, at most timeout.
func (p *Publisher) Publish(body []byte) error {
	addr, err := p.target()
	if err != nil {
		return err
	}
	if addr != p.addr {
		p.Stop()
		cfg := nsq.NewConfig()
		cfg.DialTimeout = time.Second
		cfg.WriteTimeout = p.timeout
		prod, err := nsq.NewProducer(addr, cfg)
		if err != nil {
			return fmt.Errorf("nsq producer for %s: %w", addr, err)
		}
		prod.SetLogger(nsqlog.New(p.log.WithField("nsqd", addr)), nsq.LogLevelWarning)
		p.producer, p.addr = prod, addr
		p.current.Store(addr)
		p.log.WithField("nsqd", addr).Info("publishing to nsqd")
	}
	done := make(chan *nsq.ProducerTransaction, 1)
	if err := p.producer.PublishAsync(p.topic, body, done); err != nil {
		return fmt.Errorf("publish to nsqd %s: %w", addr, err)
	}
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case tr := <-done:
		if tr.Error != nil {
			return fmt.Errorf("publish to nsqd %s: %w", addr, tr.Error)
		}
		return nil
	case <-t.C:
		// The acknowledgement may still come: then nsqd holds the message
		// and a retry publishes it again, which the averager de-duplicates.
		p.Stop()
		return fmt.Errorf("publish to nsqd %s: no acknowledgement within %s", addr, p.timeout)
	}
}

// Stop closes the producer.
func (p *Publisher) Stop() {
	if p.producer != nil {
		p.producer.Stop()
		p.producer, p.addr = nil, ""
		p.current.Store("")
	}
}

// ValidName is NSQ's rule for topic and channel names.
func ValidName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
