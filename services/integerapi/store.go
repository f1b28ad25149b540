package integerapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis/v8"

	"github.com/loopstock/loopstock/internal/window"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// Store is what the handlers need of the window store.
type Store interface {
	// Latest returns up to n windows, newest first.
	Latest(ctx context.Context, n int) ([]windowapi.Window, error)
	// Before returns up to n windows that start before before, newest first.
	Before(ctx context.Context, before time.Time, n int) ([]windowapi.Window, error)
	// Get returns the window that starts at start; false when none is stored.
	Get(ctx context.Context, start time.Time) (windowapi.Window, bool, error)
	// Put merges a write into the window at start (idempotent per piece).
	Put(ctx context.Context, start time.Time, w windowapi.Write) (windowapi.WriteResult, error)
	Ping(ctx context.Context) error
}

// ErrStaleFence is a write from a leader older than one already seen: the
// one error both sides of the write API share.
var ErrStaleFence = windowapi.ErrStaleFence

// ErrUnavailable wraps every failure to reach Redis.
var ErrUnavailable = errors.New("redis unavailable")

//go:embed put.lua
var putLua string

var putScript = redis.NewScript(putLua)

// RedisStore keeps windows in Redis:
//
//	{prefix}:windows          sorted set of window starts (ms), the index
//	{prefix}:w:{start}        hash: start end count sum amendments (ms, integers)
//	{prefix}:w:{start}:seqs   hash: generator instance → stored sequence ranges
//	{prefix}:fence            highest leader fence accepted
type RedisStore struct {
	rdb *redis.Client
	o   StoreOptions
}

// StoreOptions are the store's keys and its acknowledgement rule.
type StoreOptions struct {
	Prefix    string
	Retention int
	// MinReplicas is how many replicas must hold a write before it is
	// acknowledged (WAIT); 0 acknowledges a write on the primary alone.
	MinReplicas int
	// WaitTimeout bounds that WAIT; it must end before the client's read
	// timeout.
	WaitTimeout time.Duration
}

// ErrNotReplicated is a write that reached the primary but not enough
// replicas in time: not acknowledged, so the writer sends it again.
var ErrNotReplicated = errors.New("write not replicated")

// NewRedisStore keeps windows in Redis through rdb (DialConsulRedis or
// DialSentinels).
func NewRedisStore(rdb *redis.Client, o StoreOptions) *RedisStore {
	return &RedisStore{rdb: rdb, o: o}
}

// Close closes the connections.
func (s *RedisStore) Close() error { return s.rdb.Close() }

func (s *RedisStore) windowsKey() string { return s.o.Prefix + ":windows" }
func (s *RedisStore) windowKey(startMs int64) string {
	return s.o.Prefix + ":w:" + strconv.FormatInt(startMs, 10)
}

func unavailable(err error) error { return fmt.Errorf("%w: %v", ErrUnavailable, err) }

// Ping checks that Redis answers.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// AOF reports whether Redis has its append-only file on.
func (s *RedisStore) AOF(ctx context.Context) (bool, error) {
	// INFO, not CONFIG GET: integer-api's ACL user may not run CONFIG.
	v, err := s.rdb.Info(ctx, "persistence").Result()
	if err != nil {
		return false, unavailable(err)
	}
	return strings.Contains(v, "aof_enabled:1"), nil
}

// Latest returns up to n windows, newest first.
func (s *RedisStore) Latest(ctx context.Context, n int) ([]windowapi.Window, error) {
	starts, err := s.rdb.ZRevRange(ctx, s.windowsKey(), 0, int64(n-1)).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	return s.load(ctx, starts)
}

// Before returns up to n windows that start before before, newest first.
func (s *RedisStore) Before(ctx context.Context, before time.Time, n int) ([]windowapi.Window, error) {
	// Starts are whole milliseconds: start < before ⇔ start < before rounded up.
	ms := before.UnixMilli()
	if before.After(time.UnixMilli(ms)) {
		ms++
	}
	starts, err := s.rdb.ZRevRangeByScore(ctx, s.windowsKey(), &redis.ZRangeBy{
		Max: "(" + strconv.FormatInt(ms, 10), Min: "-inf", Count: int64(n)}).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	return s.load(ctx, starts)
}

// Get returns the window that starts at start; false when none is stored.
func (s *RedisStore) Get(ctx context.Context, start time.Time) (windowapi.Window, bool, error) {
	ws, err := s.load(ctx, []string{strconv.FormatInt(start.UnixMilli(), 10)})
	if err != nil || len(ws) == 0 {
		return windowapi.Window{}, false, err
	}
	return ws[0], true, nil
}

// load reads the windows at starts (ms), in that order, leaving out those
// no longer stored.
func (s *RedisStore) load(ctx context.Context, starts []string) ([]windowapi.Window, error) {
	if len(starts) == 0 {
		return []windowapi.Window{}, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(starts))
	for i, st := range starts {
		cmds[i] = pipe.HMGet(ctx, s.o.Prefix+":w:"+st, "start", "end", "count", "sum", "amendments")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	out := make([]windowapi.Window, 0, len(starts))
	for _, c := range cmds {
		v := c.Val()
		if len(v) != 5 || v[0] == nil {
			continue // trimmed between the two reads
		}
		out = append(out, toWindow(num(v[0]), num(v[1]), num(v[2]), num(v[3]), num(v[4])))
	}
	return out, nil
}

func num(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func toWindow(start, end, count, sum, amendments int64) windowapi.Window {
	return windowapi.Window{
		Start: time.UnixMilli(start).UTC(), End: time.UnixMilli(end).UTC(),
		Count: count, Sum: sum, Average: window.Average(sum, count), Amendments: amendments,
	}
}

// mergeAndWait sends the merge script and, with MinReplicas, the WAIT
// after it, in one pipeline: one connection for both. wait is nil
// without MinReplicas.
func (s *RedisStore) mergeAndWait(ctx context.Context, keys []string, args []any) (merge *redis.Cmd, wait *redis.Cmd, err error) {
	pipe := s.rdb.Pipeline()
	merge = pipe.EvalSha(ctx, putScript.Hash(), keys, args...)
	if s.o.MinReplicas > 0 {
		wait = pipe.Do(ctx, "wait", s.o.MinReplicas, s.o.WaitTimeout.Milliseconds())
	}
	_, err = pipe.Exec(ctx)
	return merge, wait, err
}

// Put runs the merge script: one atomic step in Redis, in the
// append-only file (appendfsync always) before Redis answers. With
// MinReplicas, a WAIT follows it on the same connection (a pipeline: WAIT
// inside MULTI or a script does not block), and the write is acknowledged
// only once that many replicas have it; otherwise ErrNotReplicated, and
// the writer's retry is absorbed by the idempotent merge.
func (s *RedisStore) Put(ctx context.Context, start time.Time, w windowapi.Write) (windowapi.WriteResult, error) {
	startMs := start.UnixMilli()
	args := make([]any, 0, 7+5*len(w.Pieces))
	args = append(args, w.Fence, startMs, w.End.UnixMilli(), time.Now().UnixMilli(), s.o.Retention, s.o.Prefix, len(w.Pieces))
	for _, p := range w.Pieces {
		args = append(args, p.Instance, p.FirstSeq, p.LastSeq, p.Count, p.Sum)
	}
	key := s.windowKey(startMs)
	keys := []string{s.windowsKey(), key, key + ":seqs", s.o.Prefix + ":fence"}
	merge, wait, err := s.mergeAndWait(ctx, keys, args)
	if merr := merge.Err(); merr != nil && strings.HasPrefix(merr.Error(), "NOSCRIPT") {
		// This Redis has not seen the script (restarted, or a new
		// primary): load it and run the pipeline again.
		if lerr := putScript.Load(ctx, s.rdb).Err(); lerr != nil {
			return windowapi.WriteResult{}, unavailable(lerr)
		}
		merge, wait, err = s.mergeAndWait(ctx, keys, args)
	}
	res, merr := merge.Slice()
	if merr != nil {
		return windowapi.WriteResult{}, unavailable(merr)
	}
	if err != nil {
		return windowapi.WriteResult{}, unavailable(err)
	}
	if wait != nil {
		if got, _ := wait.Int64(); got < int64(s.o.MinReplicas) {
			return windowapi.WriteResult{}, fmt.Errorf("%w: %d of %d replicas had it within %s (a replica down or lagging, or this primary cut off from it)",
				ErrNotReplicated, got, s.o.MinReplicas, s.o.WaitTimeout)
		}
	}
	if len(res) > 0 && res[0] == "stale" {
		return windowapi.WriteResult{}, fmt.Errorf("%w: this write's fence %d is below %v", ErrStaleFence, w.Fence, res[1])
	}
	if len(res) < 6 {
		return windowapi.WriteResult{}, fmt.Errorf("merge script answered %v", res)
	}
	n := func(i int) int64 { v, _ := res[i].(int64); return v }
	out := windowapi.WriteResult{Created: n(1) == 1, Pieces: make([]string, 0, len(w.Pieces))}
	out.Window = toWindow(startMs, w.End.UnixMilli(), n(2), n(3), n(4))
	if n(5) == 0 { // nothing stored: every piece was a duplicate of a trimmed window
		out.Window = toWindow(startMs, w.End.UnixMilli(), 0, 0, 0)
	}
	for _, st := range res[6:] {
		s, _ := st.(string)
		out.Pieces = append(out.Pieces, s)
	}
	return out, nil
}
