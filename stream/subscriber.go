package stream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// Sink takes the events the stream carries: it is told every event once per
// message, in the order of the messages (the reactions of one note and
// reactor in their order; those of others may pass them while they are
// read).
type Sink interface {
	Stream(ctx context.Context, events []webhook.Event) error
	// Unreacted is told of the reactions removed (a reaction changed is
	// removed, then made again): each a `reaction` event whose body names
	// only the note and the reactor, {"note":{"id"},"user":{"id"}}. The
	// reactor's next reaction to that note is a new event. It is told after
	// every reaction of that note and reactor read before, and before any
	// read after.
	Unreacted(ctx context.Context, events []webhook.Event) error
}

// Reactions builds the body of a `reaction` event the stream announced; the
// message names the note and the reactor, the body needs both as Ocean
// would show them. ok is false when the event must not be sent (the note is
// no longer there, its author is not local).
type Reactions interface {
	ReactionBody(ctx context.Context, noteID, reactorID, reaction string) (body []byte, ok bool, err error)
}

// Defaults of Options.
const (
	DefaultPingInterval = 5 * time.Second
	DefaultMinBackoff   = 500 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultBuffer       = 4096
	reactionWorkers     = 4
	reactionReadTimeout = 10 * time.Second
)

// Options configure a Subscriber.
type Options struct {
	// URL is the Redis Ocean publishes on: redis://[user:password@]host:port/db
	// or rediss:// for TLS.
	URL string
	// Password and DB override the URL's when set.
	Password string
	DB       int
	// TLS forces TLS on a redis:// URL. InsecureSkipVerify is never set.
	TLS bool
	// Channel is the pub/sub channel: Ocean's config.host (its URL's host with
	// the port).
	Channel string
	// PingInterval is how often a quiet subscription is checked; a connection
	// that does not answer within it is counted as down. Default
	// DefaultPingInterval.
	PingInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects (doubling,
	// with jitter).
	MinBackoff, MaxBackoff time.Duration
	// Buffer is how many derived events may wait for the Sink before the
	// subscriber stops reading. Redis then buffers for us, up to its
	// client-output-buffer-limit for pub/sub, past which it drops the
	// connection and what it held: while the subscriber is not reading its
	// state reads Behind, until a ping sent once it reads again comes back
	// (nothing was dropped) or the connection turns out lost (an outage from
	// when it stopped reading). Default DefaultBuffer.
	Buffer int
	// Now is the clock. Default time.Now.
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Health is the subscription's state.
type Health struct {
	Connected bool
	// Behind: connected, but the reader has stopped taking messages because
	// the Sink (or the reactions' reads) is not keeping up; Redis may drop
	// the connection meanwhile, and with it what was published. It ends
	// when the reader is known to have missed nothing (Connected, not
	// Behind) or when the connection is found lost (not Connected).
	Behind bool
	// Since is when the subscription last came up (Connected), fell behind
	// (Behind) or went down.
	Since time.Time
	// LastError is why it went down, without credentials; "" when up.
	LastError string
}

// Subscriber keeps a subscription to Ocean's channel and feeds the Sink.
type Subscriber struct {
	opts  Options
	redis *redis.Options // each Run's client is made from these
	subs  Subscriptions
	sink  Sink
	react Reactions
	m     *metrics
	log   *slog.Logger

	pending inflight // events handed on and not yet through the Sink

	mu      sync.Mutex
	health  Health
	changed bool // health was set by this Run's connection attempts, not by New or a Run's end
	// onHealth is told of every state change (the confirm step).
	onHealth []func(Health)
}

// New prepares a Subscriber; Run connects.
func New(opts Options, subs Subscriptions, sink Sink, react Reactions) (*Subscriber, error) {
	if subs == nil || sink == nil {
		return nil, errors.New("stream: nil hook index or sink")
	}
	if opts.Channel == "" {
		return nil, errors.New("stream: no channel")
	}
	ro, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("stream: redis URL: %w", redactURLError(err))
	}
	if opts.Password != "" {
		ro.Password = opts.Password
	}
	if opts.DB != 0 {
		ro.DB = opts.DB
	}
	if opts.TLS && ro.TLSConfig == nil {
		host, _, _ := net.SplitHostPort(ro.Addr)
		ro.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	// Only SUBSCRIBE and PING are needed (and allowed by the ACL the README
	// gives): no RESP3 handshake, no client name.
	ro.Protocol = 2
	ro.DisableIdentity = true
	ro.MaxRetries = -1
	ro.PoolSize = 1
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ro.DialTimeout = opts.PingInterval
	ro.ReadTimeout = -1 // the subscription's reads are bounded by ReceiveTimeout
	ro.WriteTimeout = opts.PingInterval
	s := &Subscriber{opts: opts, redis: ro, subs: subs, sink: sink, react: react,
		log: opts.Logger, health: Health{Since: opts.Now(), LastError: "not connected yet"}}
	s.m = newMetrics()
	if opts.Registerer != nil {
		if err := s.m.register(opts.Registerer, s); err != nil {
			return nil, fmt.Errorf("stream: metrics: %w", err)
		}
	}
	return s, nil
}

// OnHealth registers f to be told of every change of the subscription's
// state, in order. A loss of the connection is told once every event read
// before it is through the Sink (stored, or counted lost at shutdown), so
// that an event whose message was read is never taken as missed; while
// those are on their way, f is told Behind, from the loss. Call it before
// Run.
func (s *Subscriber) OnHealth(f func(Health)) {
	s.mu.Lock()
	s.onHealth = append(s.onHealth, f)
	s.mu.Unlock()
}

// Health is the subscription's state now.
func (s *Subscriber) Health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

func (s *Subscriber) setHealth(up bool, err error) {
	if h, ok := s.change(up, err); ok {
		s.tell(h)
	}
}

// lost records that the connection was lost and tells OnHealth's functions
// once what was read before is through the Sink (or ctx ended). Until then
// they are told the stream is behind from the loss: what was published
// around it may be gone, and nothing is to be judged on the stream's word
// meanwhile.
func (s *Subscriber) lost(ctx context.Context, err error) {
	s.m.reconnects.Inc()
	if h, ok := s.change(false, err); ok {
		if s.pending.busy() {
			s.tell(Health{Connected: true, Behind: true, Since: h.Since})
		}
		s.pending.wait(ctx)
		s.tell(h)
	}
}

// change sets the state and logs it, unless it is the state already; ok
// says OnHealth's functions are to be told of h.
func (s *Subscriber) change(up bool, err error) (h Health, ok bool) {
	s.mu.Lock()
	if s.changed && s.health.Connected == up && !s.health.Behind {
		s.mu.Unlock()
		return Health{}, false
	}
	caughtUp := up && s.health.Connected
	s.changed = true
	h = Health{Connected: up, Since: s.opts.Now()}
	if !up {
		h.LastError = "unknown"
		if err != nil {
			h.LastError = redactURLError(err).Error()
		}
	}
	s.health = h
	s.mu.Unlock()
	switch {
	case caughtUp:
		s.log.Info("event stream caught up: nothing was dropped while it was behind", "channel", s.opts.Channel)
	case up:
		s.m.connected.Set(1)
		s.log.Info("event stream connected", "channel", s.opts.Channel)
	default:
		s.m.connected.Set(0)
		s.log.Warn("event stream down; the API tap alone covers local calls until it is back",
			"channel", s.opts.Channel, "err", h.LastError)
	}
	return h, true
}

// tell calls OnHealth's functions with h.
func (s *Subscriber) tell(h Health) {
	s.mu.Lock()
	fs := s.onHealth
	s.mu.Unlock()
	for _, f := range fs {
		f(h)
	}
}

// caughtUp ends Behind, the connection having dropped nothing.
func (s *Subscriber) caughtUp() {
	if s.Health().Behind {
		s.setHealth(true, nil)
	}
}

// setBehind reports that the reader stopped taking messages while
// connected; setHealth ends it.
func (s *Subscriber) setBehind() {
	s.mu.Lock()
	if !s.health.Connected || s.health.Behind {
		s.mu.Unlock()
		return
	}
	h := Health{Connected: true, Behind: true, Since: s.opts.Now()}
	s.health = h
	s.mu.Unlock()
	s.log.Warn("event stream behind: the store is not keeping up; Redis may drop the subscription, and held API events wait until this is settled",
		"channel", s.opts.Channel)
	s.tell(h)
}

// Run subscribes and feeds the Sink until ctx ends, reconnecting with
// backoff whenever the connection is lost. It returns nil after ctx ends and
// everything read has been handed to the Sink; the subscription is closed
// then, and the state reads "stopped". Run may be called again after it
// returned (a sidecar that leads the stream for several terms): each Run has
// a Redis client of its own, and the first state it reaches is reported to
// OnHealth's functions. Runs must not overlap.
func (s *Subscriber) Run(ctx context.Context) error {
	client := redis.NewClient(s.redis)
	defer client.Close()
	events := make(chan webhook.Event, s.opts.Buffer)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.feed(ctx, events)
	}()
	// The reactions of one note and reactor go to one worker, which takes
	// them in order: a removal reaches the Sink after the reactions read
	// before it and before those read after it.
	reacted := make([]chan Reacted, reactionWorkers)
	for i := range reacted {
		reacted[i] = make(chan Reacted, (s.opts.Buffer+reactionWorkers-1)/reactionWorkers)
		wg.Add(1)
		go func(in <-chan Reacted) {
			defer wg.Done()
			for r := range in {
				if r.Removed {
					s.unreact(ctx, r)
				} else {
					s.complete(ctx, r)
				}
				s.pending.add(-1)
			}
		}(reacted[i])
	}
	s.receive(ctx, client, events, reacted)
	close(events)
	for _, c := range reacted {
		close(c)
	}
	wg.Wait()
	s.mu.Lock()
	s.health = Health{Since: s.opts.Now(), LastError: "stopped"}
	s.changed = false
	s.mu.Unlock()
	s.m.connected.Set(0)
	s.log.Info("event stream closed", "channel", s.opts.Channel)
	return nil
}

// receive reads messages until ctx ends. The end of ctx closes the
// subscription at once, and what is read after it is not taken: a Run whose
// term ended stops reading then, not at the next ping.
func (s *Subscriber) receive(ctx context.Context, client *redis.Client, events chan<- webhook.Event, reacted []chan Reacted) {
	ps := client.Subscribe(ctx, s.opts.Channel)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	backoff := s.opts.MinBackoff
	pinged := false
	// While behind: a catch-up ping is on its way (waiting), and the reader
	// stopped again after it was sent (again).
	waiting, again := false, false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, s.opts.PingInterval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			if timedOut && !pinged && s.Health().Connected {
				// Quiet: ask the server whether the connection still works.
				if perr := ps.Ping(ctx); perr == nil {
					pinged = true
					continue
				}
			}
			pinged, waiting, again = false, false, false
			s.lost(ctx, err)
			if !sleep(ctx, jitter(backoff)) {
				return
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
			if timedOut {
				// go-redis keeps a connection whose reads only timed
				// out: subscribe on it again, so that a server that
				// answers again says so (a subscription), and one that
				// is gone fails the write (a new connection).
				_ = ps.Subscribe(ctx, s.opts.Channel)
			}
			// The next ReceiveTimeout reconnects and subscribes again
			// after an error of the connection.
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == s.opts.Channel {
				backoff = s.opts.MinBackoff
				s.setHealth(true, nil)
			}
		case *redis.Pong:
			if m.Payload != catchUpPing || !waiting {
				break
			}
			if !again {
				// Every message published before Redis answered was read,
				// and the reader did not stop since the ping was sent:
				// none was dropped.
				waiting = false
				s.caughtUp()
				break
			}
			again = false
			if err := ps.Ping(ctx, catchUpPing); err != nil {
				waiting = false
				s.lost(ctx, err) // go-redis reconnects at the next read
			}
		case *redis.Message:
			if !s.handle(m.Payload, events, reacted) {
				break
			}
			if waiting {
				again = true
			} else if err := ps.Ping(ctx, catchUpPing); err != nil {
				s.lost(ctx, err)
			} else {
				waiting = true
			}
		}
	}
}

// catchUpPing is the payload of the ping that ends Behind.
const catchUpPing = "oceanhooks-caught-up"

// handle decodes one message and passes on what it gave; it reports whether
// it had to wait for room (the state is Behind then). The message itself is
// never logged: the channel carries tokens and secrets.
func (s *Subscriber) handle(raw string, events chan<- webhook.Event, reacted []chan Reacted) (waited bool) {
	d := Decode(raw, s.subs)
	s.m.messages.WithLabelValues(string(d.Outcome)).Inc()
	switch {
	case d.Outcome == Malformed:
		s.log.Warn("event stream message of unknown shape ignored", "reason", d.Reason, "bytes", len(raw))
	case d.Outcome != Derived:
	case d.Reacted != nil:
		if s.react == nil && !d.Reacted.Removed {
			break
		}
		in := reacted[shard(d.Reacted, len(reacted))]
		s.pending.add(1)
		select {
		case in <- *d.Reacted:
		default:
			s.setBehind()
			in <- *d.Reacted
			return true
		}
	default:
		s.pending.add(1)
		select {
		case events <- d.Event:
		default:
			s.setBehind()
			events <- d.Event
			return true
		}
	}
	return false
}

// feed hands events to the Sink, every event waiting at once in one call.
func (s *Subscriber) feed(ctx context.Context, events <-chan webhook.Event) {
	batch := make([]webhook.Event, 0, 64)
	for ev := range events {
		batch = append(batch[:0], ev)
	more:
		for len(batch) < cap(batch) {
			select {
			case ev, ok := <-events:
				if !ok {
					break more
				}
				batch = append(batch, ev)
			default:
				break more
			}
		}
		s.deliver(ctx, batch)
		s.pending.add(-len(batch))
	}
}

// shard is the worker of r's note and reactor, of n.
func shard(r *Reacted, n int) int {
	h := fnv.New32a()
	h.Write([]byte(r.NoteID))
	h.Write([]byte{0})
	h.Write([]byte(r.ReactorID))
	return int(h.Sum32() % uint32(n))
}

// deliver gives batch to the Sink, retrying while it fails: an event the
// stream carried is gone from Redis once read, so it is not dropped for a
// passing store error. After ctx ends it tries once more, then counts the
// batch as lost.
func (s *Subscriber) deliver(ctx context.Context, batch []webhook.Event) {
	if s.retry(ctx, len(batch), s.sink.Stream, batch) {
		for _, ev := range batch {
			s.m.events.WithLabelValues(ev.Type).Inc()
		}
	}
}

// retry calls give with batch until it succeeds, as deliver does, and
// reports whether it did.
func (s *Subscriber) retry(ctx context.Context, n int, give func(context.Context, []webhook.Event) error, batch []webhook.Event) bool {
	wait := s.opts.MinBackoff
	for {
		err := give(context.WithoutCancel(ctx), batch)
		if err == nil {
			return true
		}
		s.m.sinkFailures.Inc()
		if ctx.Err() != nil {
			s.m.lost.Add(float64(n))
			s.log.Error("events from the stream lost: the store failed at shutdown", "events", n, "err", err)
			return false
		}
		s.log.Error("storing events from the stream failed; retrying", "events", n, "err", err)
		sleep(ctx, jitter(wait))
		wait = min(2*wait, s.opts.MaxBackoff)
	}
}

// unreact tells the Sink that a reaction was removed.
func (s *Subscriber) unreact(ctx context.Context, r Reacted) {
	type id struct {
		ID string `json:"id"`
	}
	body, err := json.Marshal(struct {
		Note id `json:"note"`
		User id `json:"user"`
	}{id{r.NoteID}, id{r.ReactorID}})
	if err != nil {
		s.log.Error("a removed reaction from the stream skipped", "err", err)
		return
	}
	s.retry(ctx, 1, s.sink.Unreacted, []webhook.Event{{Type: webhook.Reaction, UserID: r.AuthorID, Body: body}})
}

// complete reads what a reaction event needs and hands it to the Sink.
func (s *Subscriber) complete(ctx context.Context, r Reacted) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reactionReadTimeout)
	defer cancel()
	body, ok, err := s.react.ReactionBody(rctx, r.NoteID, r.ReactorID, r.Reaction)
	if err != nil {
		s.m.skipped.Inc()
		s.log.Warn("reaction from the stream skipped: reading the note or the reactor failed", "err", err)
		return
	}
	if !ok {
		return
	}
	s.deliver(ctx, []webhook.Event{{Type: webhook.Reaction, UserID: r.AuthorID, Body: body}})
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter is d plus up to 20 %.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// redactURLError keeps a Redis URL's password out of an error's text.
func redactURLError(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(redactPasswords(err.Error()))
}

// inflight counts events handed on and not yet through the Sink.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n comes to 0; nil when nobody waits
}

func (f *inflight) add(d int) {
	f.mu.Lock()
	f.n += d
	if f.n == 0 && f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
	f.mu.Unlock()
}

// busy reports whether any is in flight.
func (f *inflight) busy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n > 0
}

// wait returns when none is in flight, or when ctx ends.
func (f *inflight) wait(ctx context.Context) {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	if f.zero == nil {
		f.zero = make(chan struct{})
	}
	zero := f.zero
	f.mu.Unlock()
	select {
	case <-zero:
	case <-ctx.Done():
	}
}
