// Package confirm merges the two sources of webhook events into one delivery
// per event: the API tap, which sees what users do through the API early and
// durably, and Ocean's event stream, which carries every event Ocean fires
// with Ocean's own body.
//
// An event the API tap derives is held (stored durably, not yet delivered)
// under its key, the identity of the domain event. When the stream's twin
// arrives, the held deliveries take the stream's body and go out at once;
// when the stream's twin came first, the API's event is not stored at all.
// A hold that is still unconfirmed when its window ends is dropped if the
// stream was up from a window before the event to the window's end (Ocean
// chose not to fire it: a thread mute, a silenced user), and delivered as
// derived otherwise (the twin may have been lost while the stream was down;
// Redis pub/sub keeps nothing for a subscriber that is away). While the
// stream is behind (connected, but not reading: its store is slow, and Redis
// may drop it and what it held), holds due since it fell behind wait: if it
// catches up they are judged as usual, if it turns out disconnected the
// outage counts from when it fell behind. After a restart the stream counts
// as down until it is back, so no hold made before a crash is dropped on the
// stream's word.
//
// `reaction` is ours, not Ocean's: Ocean fires no webhook for it, so the
// stream has no say on whether it happens. Both sources report it, and
// whichever reaches the store first is delivered; the other is a repeat.
// A reaction removed (the stream's `unreacted`, which a changed reaction
// also publishes before its new `reacted`) is forgotten, so the next
// reaction of that user to that note is a new event, whichever source
// reports it first. While the stream is down there is no twin to wait
// for: the API's reaction is stored as new even when its key is
// remembered (by the sidecar that runs the stream; one standing by while
// another leads leaves the key to the leader's stream).
package confirm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/queue"
	"github.com/oceanhooks/oceanhooks/stream"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Store is the durable queue.
type Store interface {
	Enqueue(ctx context.Context, events []webhook.Event) (int, error)
	Hold(ctx context.Context, events []webhook.Event, until time.Time, remember time.Duration) (int, error)
	Confirm(ctx context.Context, events []webhook.Event, remember time.Duration) (queue.ConfirmResult, error)
	Forget(ctx context.Context, keys []string) error
	Settle(now time.Time, limit int, deliver func(heldAt time.Time) bool) (released, dropped int, err error)
}

var _ Store = (*queue.Queue)(nil)

// Defaults of Options.
const (
	DefaultWindow   = 5 * time.Second
	DefaultRemember = 10 * time.Minute
	settleBatch     = 256
)

// Options tune a Merger.
type Options struct {
	// Window is how long an API-derived event waits for the stream's twin.
	// Default DefaultWindow.
	Window time.Duration
	// Remember is how long an event key the stream confirmed is kept, so
	// that the API's copy arriving later is recognised. Default
	// DefaultRemember.
	Remember time.Duration
	// DetectionDelay is how long the stream may be down before the
	// subscriber notices (two ping intervals): outages are taken to have
	// begun that much before they were seen.
	DetectionDelay time.Duration
	// Leading reports whether this process runs the event stream for the
	// store (nil: always). Only then does a stream that is down mean that
	// no twin can come: a sidecar standing by while another one leads
	// (several sidecars on PostgreSQL) has no stream of its own, and the
	// leader's confirms its events.
	Leading func() bool
	// Now is the clock. Default time.Now.
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Merger implements the API tap's sink (matchers.Sink) and the stream's
// (stream.Sink) over one Store.
type Merger struct {
	store Store
	opts  Options
	log   *slog.Logger
	m     *metrics

	mu          sync.Mutex
	up          bool
	behindSince time.Time  // when the stream fell behind, when up (zero: it is not)
	downSince   time.Time  // start of the current outage, when !up
	outages     []interval // ended outages that may still matter
}

type interval struct{ from, to time.Time }

// New makes a Merger. Until the stream reports that it is up, it counts as
// down since now.
func New(store Store, opts Options) (*Merger, error) {
	if store == nil {
		return nil, errors.New("confirm: nil store")
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Remember <= 0 {
		opts.Remember = DefaultRemember
	}
	opts.Remember = max(opts.Remember, 2*opts.Window)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Merger{store: store, opts: opts, log: opts.Logger, m: newMetrics(), downSince: opts.Now()}
	if opts.Registerer != nil {
		if err := m.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("confirm: metrics: %w", err)
		}
	}
	return m, nil
}

// StreamUp, StreamBehind and StreamDown tell the Merger of the stream's
// state changes, at the time they happened. StreamUp also ends a time
// behind that dropped nothing.
func (m *Merger) StreamUp(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.behindSince = time.Time{}
	if m.up {
		return
	}
	m.up = true
	m.outages = append(m.outages, interval{m.downSince, at})
}

// StreamHealth tells the Merger a state of the stream as the subscriber
// reports it (stream.Subscriber.OnHealth): down, behind or up, since
// h.Since.
func (m *Merger) StreamHealth(h stream.Health) {
	switch {
	case !h.Connected:
		m.StreamDown(h.Since)
	case h.Behind:
		m.StreamBehind(h.Since)
	default:
		m.StreamUp(h.Since)
	}
}

// StreamBehind: the stream is connected but has stopped reading. See
// StreamUp.
func (m *Merger) StreamBehind(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.up && m.behindSince.IsZero() {
		m.behindSince = at
	}
}

// StreamDown: see StreamUp. An outage found while behind began, at the
// latest, when the stream fell behind.
func (m *Merger) StreamDown(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return
	}
	m.up = false
	if !m.behindSince.IsZero() && m.behindSince.Before(at) {
		at = m.behindSince
	}
	m.behindSince = time.Time{}
	m.downSince = at.Add(-m.opts.DetectionDelay)
}

// noTwin reports whether no twin can come for an event the API tap sees
// now: this process runs the stream, and the stream is down.
func (m *Merger) noTwin() bool {
	m.mu.Lock()
	up := m.up
	m.mu.Unlock()
	return !up && (m.opts.Leading == nil || m.opts.Leading())
}

// settleUntil is how far holds can be ended: now, or when the stream fell
// behind (a hold due later waits to learn whether its twin was dropped).
func (m *Merger) settleUntil(now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.behindSince.IsZero() && m.behindSince.Before(now) {
		return m.behindSince
	}
	return now
}

// wasUp reports whether the stream was up during all of [from, to].
func (m *Merger) wasUp(from, to time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up && !m.downSince.After(to) {
		return false
	}
	for _, o := range m.outages {
		if o.from.Before(to) && o.to.After(from) {
			return false
		}
	}
	return true
}

// forget drops outages that ended before any hold still open began.
func (m *Merger) forget(before time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := m.outages[:0]
	for _, o := range m.outages {
		if !o.to.Before(before) {
			keep = append(keep, o)
		}
	}
	m.outages = keep
}

// Enqueue takes the API tap's events (matchers.Sink): each is held for the
// stream's twin, durably before Enqueue returns. An event without a key goes
// straight to the queue.
func (m *Merger) Enqueue(ctx context.Context, events []webhook.Event) (int, error) {
	var held, first, direct []webhook.Event
	for _, ev := range events {
		ev.Key, ev.Recurs = Key(ev), recurs(ev.Type)
		switch {
		case ev.Key == "":
			direct = append(direct, ev)
		case ev.Type == webhook.Reaction:
			first = append(first, ev)
		default:
			held = append(held, ev)
		}
	}
	total := 0
	if len(direct) > 0 {
		n, err := m.store.Enqueue(ctx, direct)
		if err != nil {
			return total, err
		}
		m.m.api.WithLabelValues("direct").Add(float64(len(direct)))
		total += n
	}
	if len(first) > 0 {
		if m.noTwin() {
			// No twin to wait for: a reaction remembered from before
			// (removed or changed since, which only the stream tells) is
			// a new one. A sidecar standing by must not do this: the
			// leader's stream may have confirmed this very reaction.
			keys := make([]string, len(first))
			for i, ev := range first {
				keys[i] = ev.Key
			}
			if err := m.store.Forget(ctx, keys); err != nil {
				return total, err
			}
		}
		r, err := m.store.Confirm(ctx, first, m.opts.Remember)
		if err != nil {
			return total, err
		}
		m.m.api.WithLabelValues("first").Add(float64(len(first) - r.Repeats))
		m.m.api.WithLabelValues("repeat").Add(float64(r.Repeats))
		total += r.New + r.Released
	}
	if len(held) > 0 {
		n, err := m.store.Hold(ctx, held, m.opts.Now().Add(m.opts.Window), m.opts.Remember)
		if err != nil {
			return total, err
		}
		m.m.api.WithLabelValues("held").Add(float64(len(held)))
		total += n
	}
	return total, nil
}

// Stream takes the stream's events (stream.Sink): held twins get their body
// and go out, the others are stored as new deliveries, repeats are ignored.
func (m *Merger) Stream(ctx context.Context, events []webhook.Event) error {
	var keyed, direct []webhook.Event
	for _, ev := range events {
		ev.Key, ev.Recurs = Key(ev), recurs(ev.Type)
		if ev.Key == "" {
			direct = append(direct, ev)
			continue
		}
		keyed = append(keyed, ev)
	}
	if len(direct) > 0 {
		if _, err := m.store.Enqueue(ctx, direct); err != nil {
			return err
		}
		m.m.stream.WithLabelValues("new").Add(float64(len(direct)))
	}
	if len(keyed) == 0 {
		return nil
	}
	r, err := m.store.Confirm(ctx, keyed, m.opts.Remember)
	if err != nil {
		return err
	}
	m.m.stream.WithLabelValues("confirmed").Add(float64(r.Released))
	m.m.stream.WithLabelValues("new").Add(float64(r.New))
	m.m.stream.WithLabelValues("repeat").Add(float64(r.Repeats))
	return nil
}

// Unreacted takes the stream's removed reactions (stream.Sink): each is a
// reaction event whose body names the note and the reactor, and the key's
// confirmation is forgotten, so the next reaction under it is delivered.
func (m *Merger) Unreacted(ctx context.Context, events []webhook.Event) error {
	keys := make([]string, 0, len(events))
	for _, ev := range events {
		if k := Key(ev); k != "" && ev.Type == webhook.Reaction {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := m.store.Forget(ctx, keys); err != nil {
		return err
	}
	m.m.stream.WithLabelValues("unreacted").Add(float64(len(keys)))
	return nil
}

// Run ends the holds whose window is over, until ctx ends.
func (m *Merger) Run(ctx context.Context) error {
	tick := time.NewTicker(max(m.opts.Window/10, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m.settle()
		}
	}
}

// settle ends every hold that is due now.
func (m *Merger) settle() {
	now := m.settleUntil(m.opts.Now())
	deliver := func(heldAt time.Time) bool {
		// The twin is published before Ocean answers, so the stream must
		// have been up from a window before the event was derived.
		return !m.wasUp(heldAt.Add(-m.opts.Window), heldAt.Add(m.opts.Window))
	}
	for {
		released, dropped, err := m.store.Settle(now, settleBatch, deliver)
		if err != nil {
			m.log.Error("ending held deliveries failed; retrying", "err", err)
			return
		}
		m.m.settled.WithLabelValues("delivered").Add(float64(released))
		m.m.settled.WithLabelValues("dropped").Add(float64(dropped))
		if dropped > 0 {
			m.log.Debug("held events dropped: the event stream did not confirm them", "deliveries", dropped)
		}
		if released+dropped < settleBatch {
			break
		}
	}
	m.forget(now.Add(-3 * m.opts.Window))
}

// recurs reports whether events of typ can happen again under one key: a
// follow (two users can follow, unfollow and follow again), not a note.
func recurs(typ string) bool {
	return typ == webhook.Follow || typ == webhook.Followed || typ == webhook.Unfollow
}

// Key is the identity of the domain event ev stands for, the same whichever
// source saw it: type, recipient and the note or user it is about ("" when
// the body names neither). A reaction is one per reactor and note.
func Key(ev webhook.Event) string {
	body := gjson.ParseBytes(ev.Body)
	switch ev.Type {
	case webhook.Note, webhook.Reply, webhook.Renote, webhook.Mention:
		if id := body.Get("note.id"); id.Type == gjson.String && id.Str != "" {
			return ev.Type + "\x00" + ev.UserID + "\x00" + id.Str
		}
	case webhook.Follow, webhook.Followed, webhook.Unfollow:
		if id := body.Get("user.id"); id.Type == gjson.String && id.Str != "" {
			return ev.Type + "\x00" + ev.UserID + "\x00" + id.Str
		}
	case webhook.Reaction:
		note, user := body.Get("note.id"), body.Get("user.id")
		if note.Type == gjson.String && user.Type == gjson.String && note.Str != "" && user.Str != "" {
			return ev.Type + "\x00" + ev.UserID + "\x00" + note.Str + "\x00" + user.Str
		}
	}
	return ""
}
