package windowapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/tlsid"
)

// ErrStaleFence means the store has seen a newer leader: stop writing.
var ErrStaleFence = errors.New("the store refused the write: a newer leader has written (stale fence)")

// Client writes windows to any passing integer-api instance.
type Client struct {
	watch *discovery.Watch
	token string
	http  *http.Client
	next  atomic.Uint64
	tls   bool
}

// NewClient writes through the instances that watch follows.
func NewClient(watch *discovery.Watch, token string, timeout time.Duration) *Client {
	return &Client{watch: watch, token: token, http: &http.Client{Timeout: timeout}}
}

// WithTLS makes the client write to each instance's mutual-TLS listener
// (its Consul meta write_port) with certs, accepting only a server whose
// certificate says service.
func (c *Client) WithTLS(certs *tlsid.Source, service string) *Client {
	c.tls = true
	c.http = &http.Client{Timeout: c.http.Timeout, Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(service),
		TLSHandshakeTimeout: c.http.Timeout, MaxIdleConnsPerHost: 4}}
	return c
}

// url is where a write of start goes on inst.
func (c *Client) url(inst discovery.Instance, start time.Time) (string, error) {
	if !c.tls {
		return "http://" + inst.Addr() + Path(start), nil
	}
	addr, ok := inst.MetaAddr("write_port")
	if !ok {
		return "", fmt.Errorf("integer-api %s is registered without meta.write_port: is it running without --tls-cert-file?", inst.Addr())
	}
	return "https://" + addr + Path(start), nil
}

// Put writes w for the window starting at start, trying each passing
// instance once. A *StatusError or ErrStaleFence tells what the API said.
func (c *Client) Put(ctx context.Context, start time.Time, w Write) (WriteResult, error) {
	list, _, werr := c.watch.Current()
	if len(list) == 0 {
		if werr != nil {
			return WriteResult{}, fmt.Errorf("no passing integer-api in consul: %v", werr)
		}
		return WriteResult{}, errors.New("no passing integer-api in consul")
	}
	body, err := json.Marshal(w)
	if err != nil {
		return WriteResult{}, err
	}
	first := int(c.next.Add(1))
	var lastErr error
	for i := range list {
		inst := list[(first+i)%len(list)]
		u, err := c.url(inst, start)
		if err != nil {
			lastErr = err
			continue
		}
		res, err := c.put(ctx, u, body)
		if err == nil || errors.Is(err, ErrStaleFence) {
			return res, err
		}
		var se *StatusError
		if errors.As(err, &se) && se.Status < 500 {
			return res, err // the request is wrong: another instance says the same
		}
		lastErr = err
	}
	return WriteResult{}, lastErr
}

// StatusError is an error answer of the API.
type StatusError struct {
	Status int
	Error_ Error
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("integer-api answered %d %s: %s", e.Status, e.Error_.Code, e.Error_.Message)
}

func (c *Client) put(ctx context.Context, url string, body []byte) (WriteResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return WriteResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return WriteResult{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return WriteResult{}, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		se := &StatusError{Status: resp.StatusCode}
		json.Unmarshal(data, &se.Error_)
		if se.Error_.Code == CodeStaleFence {
			return WriteResult{}, ErrStaleFence
		}
		return WriteResult{}, se
	}
	var res WriteResult
	if err := json.Unmarshal(data, &res); err != nil {
		return WriteResult{}, fmt.Errorf("integer-api answer is not a write result: %w", err)
	}
	return res, nil
}
