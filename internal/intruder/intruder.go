// Package intruder tries, from wherever it runs, what a stranger on the
// cluster network would try against the data plane: publish to nsqd and
// take a share of the averager's channel, call nsqd's HTTP API, write to
// Redis, write a window to integer-api. With a certificate of the
// cluster's CA (a host of another service taken over), it tries the same
// holding it. Every attempt should be refused; dataplane-probe reports
// each and exits non-zero when one was not.
package intruder

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-redis/redis/v8"
	"github.com/nsqio/go-nsq"
)

// Targets are the addresses tried; an empty one is skipped.
type Targets struct {
	NSQDTCP   string // nsqd's TCP port
	NSQDHTTP  string // nsqd's own HTTP port (loopback only on the cluster)
	NSQDGate  string // nsqd-gate's HTTPS port
	Redis     string
	APIHTTP   string // integer-api's plain listener
	APIWrites string // integer-api's mutual-TLS write listener
	// NSQLookupdTCP is where nsqd registers: the probe registers an
	// impostor nsqd there and waits ImpostorWait for a subscriber.
	NSQLookupdTCP string
	ImpostorWait  time.Duration
}

// Attempt is one try and what came of it.
type Attempt struct {
	Name    string `json:"attempt"`
	Refused bool   `json:"refused"`
	Detail  string `json:"detail"`
}

// ProbeTopic is the topic the probes publish to: never the pipeline's.
const ProbeTopic = "loopstock-probe"

// Run tries everything in t, presenting cert when it is not nil.
func Run(ctx context.Context, t Targets, cert *tls.Certificate) []Attempt {
	// A stranger does not check who answers: it wants in.
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	var out []Attempt
	try := func(name, addr string, fn func() error) {
		if addr == "" {
			return
		}
		err := fn()
		a := Attempt{Name: name + " (" + addr + ")", Refused: err != nil, Detail: "accepted"}
		if err != nil {
			a.Detail = err.Error()
		}
		out = append(out, a)
	}
	try("nsqd: publish in plaintext", t.NSQDTCP, func() error { return publish(t.NSQDTCP, nil) })
	try("nsqd: publish over TLS", t.NSQDTCP, func() error { return publish(t.NSQDTCP, cfg) })
	try("nsqd: subscribe to the averager's channel over TLS", t.NSQDTCP, func() error { return subscribe(t.NSQDTCP, cfg) })
	try("nsqd: HTTP publish on nsqd's own port", t.NSQDHTTP, func() error {
		return post(&http.Client{Timeout: 3 * time.Second}, "http://"+t.NSQDHTTP+"/pub?topic="+ProbeTopic, "probe")
	})
	try("nsqd-gate: HTTPS publish", t.NSQDGate, func() error {
		return post(httpsClient(cfg), "https://"+t.NSQDGate+"/pub?topic="+ProbeTopic, "probe")
	})
	try("nsqd-gate: HTTPS delete of the integers topic", t.NSQDGate, func() error {
		return post(httpsClient(cfg), "https://"+t.NSQDGate+"/topic/delete?topic=integers", "")
	})
	try("redis: write in plaintext", t.Redis, func() error { return redisWrite(ctx, t.Redis, nil) })
	try("redis: write over TLS", t.Redis, func() error { return redisWrite(ctx, t.Redis, cfg) })
	try("integer-api: window write on the plain listener", t.APIHTTP, func() error {
		return put(&http.Client{Timeout: 3 * time.Second}, "http://"+t.APIHTTP)
	})
	try("integer-api: window write on the TLS listener", t.APIWrites, func() error { return put(httpsClient(cfg), "https://"+t.APIWrites) })
	try("nsqlookupd: an impostor nsqd for the averager's channel", t.NSQLookupdTCP, func() error {
		wait := t.ImpostorWait
		if wait <= 0 {
			wait = 20 * time.Second
		}
		return impostor(t.NSQLookupdTCP, wait)
	})
	return out
}

// impostor registers a plaintext nsqd of its own with nsqlookupd for the
// averager's topic and channel, as anyone on the network can, and waits
// for an NSQ client to connect to it: go-nsq starts TLS only when the
// server offers it, so a client that did would subscribe, and could send
// its secret, with no certificate checked. Refused when none came.
func impostor(lookupdTCP string, wait time.Duration) error {
	lookupd, err := net.DialTimeout("tcp", lookupdTCP, 3*time.Second)
	if err != nil {
		return err
	}
	defer lookupd.Close()
	// Listen where nsqlookupd sees this host: its address on the cluster
	// network.
	host := lookupd.LocalAddr().(*net.TCPAddr).IP.String()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	identify, _ := json.Marshal(map[string]any{"broadcast_address": host, "hostname": "dataplane-probe",
		"tcp_port": port, "http_port": port, "version": "1.3.0"})
	var req bytes.Buffer
	req.WriteString("  V1IDENTIFY\n")
	binary.Write(&req, binary.BigEndian, int32(len(identify)))
	req.Write(identify)
	req.WriteString("REGISTER integers averager\n")
	lookupd.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := lookupd.Write(req.Bytes()); err != nil {
		return fmt.Errorf("registering with nsqlookupd: %w", err)
	}
	for _, step := range []string{"IDENTIFY", "REGISTER"} {
		resp, err := lookupdResponse(lookupd)
		if err != nil {
			return fmt.Errorf("nsqlookupd's answer to %s: %w", step, err)
		}
		if step == "REGISTER" && string(resp) != "OK" {
			return fmt.Errorf("nsqlookupd refused the registration: %q", resp)
		}
	}
	lookupd.SetDeadline(time.Time{})
	deadline := time.Now().Add(wait)
	ln.(*net.TCPListener).SetDeadline(deadline)
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("registered as nsqd %s:%d with nsqlookupd; no NSQ client connected within %s", host, port, wait)
		}
		magic := make([]byte, 4)
		c.SetDeadline(deadline)
		_, err = io.ReadFull(c, magic)
		c.Close()
		if err == nil && string(magic) == "  V2" {
			return nil // an NSQ client, in plaintext: let in
		}
		// Something else (a port scan): keep waiting.
	}
}

// lookupdResponse reads one of nsqlookupd's answers: a size, then data.
func lookupdResponse(r io.Reader) ([]byte, error) {
	var n int32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("answer of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

func publish(addr string, cfg *tls.Config) error {
	c := nsq.NewConfig()
	c.DialTimeout = 3 * time.Second
	if cfg != nil {
		c.TlsV1, c.TlsConfig = true, cfg
	}
	p, err := nsq.NewProducer(addr, c)
	if err != nil {
		return err
	}
	p.SetLogger(nil, nsq.LogLevelError)
	defer p.Stop()
	return p.Publish(ProbeTopic, []byte("probe"))
}

// subscribe is refused when the connection fails or no message comes
// within 5 s while integers flow (20 a second on the cluster).
func subscribe(addr string, cfg *tls.Config) error {
	c := nsq.NewConfig()
	c.DialTimeout = 3 * time.Second
	c.TlsV1, c.TlsConfig = true, cfg
	cons, err := nsq.NewConsumer("integers", "averager", c)
	if err != nil {
		return err
	}
	cons.SetLogger(nil, nsq.LogLevelError)
	got := make(chan struct{}, 1)
	cons.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		m.Requeue(0) // hand it straight back: the probe takes nothing
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	}))
	defer cons.Stop()
	if err := cons.ConnectToNSQD(addr); err != nil {
		return err
	}
	select {
	case <-got:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("no message within 5s: the subscription was refused")
	}
}

func httpsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func post(c *http.Client, url, body string) error {
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return err
	}
	return refusal(resp)
}

func redisWrite(ctx context.Context, addr string, cfg *tls.Config) error {
	c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: cfg, DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.Set(ctx, "loopstock:probe", "forged", time.Minute).Err()
}

// refusal is an answer that refused the caller (401, 403) as an error;
// any other answer got past the door (a 409 stale fence, a 400 too).
func refusal(resp *http.Response) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%s: %s", resp.Status, strings.Join(strings.Fields(string(b)), " "))
	}
	return nil
}

// put writes a window far in the past (the epoch's second window), so an
// accepted write could not be mistaken for the pipeline's.
func put(c *http.Client, base string) error {
	body := `{"end":"1970-01-01T00:00:10Z","fence":1,"pieces":[{"instance":"0123456789abcdef0123456789abcdef","first_seq":0,"last_seq":0,"count":1,"sum":1}]}`
	req, err := http.NewRequest(http.MethodPut, base+"/v1/integers/1970-01-01T00:00:05Z", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	return refusal(resp)
}
