package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Errors a caller branches on.
var (
	// ErrNotFound: no hook has that id, or it belongs to someone else.
	ErrNotFound = errors.New("no such webhook")
	// ErrLimit: the owner already has as many hooks as the limit allows.
	ErrLimit = errors.New("webhook limit reached")
)

// Hook is one user webhook, as Ocean models it.
type Hook struct {
	ID, UserID, Name string
	On               []string
	URL, Secret      string
	Active           bool
	LatestSentAt     *time.Time
	LatestStatus     *int
	// NativeID is the id of the hook in Ocean this one was imported from
	// (Import); empty for a hook created through the sidecar.
	NativeID string
	// FailingSince is when the hook's current run of failed delivery
	// attempts began: nil when its latest attempt succeeded (on PostgreSQL:
	// through any sidecar), when it has had none, and from its
	// (re)activation on. Failures counts the attempts of
	// that run. Both trail the attempts by at most one of the queue's
	// batches (see RecordAttempts).
	FailingSince *time.Time
	Failures     int
	// DisabledAt is when auto-disable deactivated the hook (see Attempted);
	// nil if it did not, or once the hook is active again.
	DisabledAt *time.Time

	// succeededAt is when the latest successful delivery attempt of the
	// hook, through any Store on the data, began: it ends every run of
	// failed attempts that began at or before it. PostgreSQL only; nil on
	// Badger, whose one Store ends its runs as it makes the attempts.
	succeededAt *time.Time
}

func (h Hook) target() webhook.Target {
	return webhook.Target{HookID: h.ID, UserID: h.UserID, URL: h.URL, Secret: h.Secret, Active: h.Active}
}

// cloneOn copies an event type list; empty is [], never null.
func cloneOn(on []string) []string {
	if on == nil {
		return []string{}
	}
	return slices.Clone(on)
}

// Patch is a partial update: nil fields stay as they are.
type Patch struct {
	Name, URL, Secret *string
	On                *[]string
	Active            *bool
}

func (p Patch) apply(h *Hook) {
	if p.Name != nil {
		h.Name = *p.Name
	}
	if p.URL != nil {
		h.URL = *p.URL
	}
	if p.Secret != nil {
		h.Secret = *p.Secret
	}
	if p.On != nil {
		h.On = cloneOn(*p.On)
	}
	if p.Active != nil {
		h.Active = *p.Active
	}
}

// Options configure a Store. Zero values take the defaults.
type Options struct {
	// Now is the clock of new ids. Default time.Now.
	Now func() time.Time
	// Rand draws the node part of new ids. Default: seeded randomly.
	Rand *rand.Rand
	// Logger gets failures of the queue's bookkeeping calls, which return
	// no error. Default: discard.
	Logger *slog.Logger
	// DisableAfter deactivates a hook whose delivery attempts have all
	// failed for this long (see Attempted). 0: never.
	DisableAfter time.Duration
	// Registerer receives the store's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// Store keeps hooks in a backend (Badger or PostgreSQL) and every hook's
// target, and the active ones, in an in-memory index that the hot path reads
// without locks or I/O. Every write is one transaction of the backend; the
// index changes only after that transaction committed, so a failed write
// leaves both as they were.
type Store struct {
	be  backend
	db  *badger.DB // the Badger backend's database; nil on PostgreSQL
	ids *ocean.IDGen
	now func() time.Time
	log *slog.Logger

	// writeMu serialises the writes of this Store and the reloads of
	// hooks that other Stores changed (Run): the index changes under it,
	// so that it never applies an older state of a hook after a newer one.
	writeMu sync.Mutex
	idx     atomic.Pointer[index]

	// takenOver remembers the users TakenOver found taken over, so that
	// asking again costs no read. A user is never taken back.
	takenOver sync.Map // userID → struct{}

	disableAfter time.Duration
	failing      failingRuns // hooks whose latest attempts failed (autodisable.go)
	autoDisabled prometheus.Counter
}

// Open returns the store of db (opened and closed by the caller) and builds
// the active index from what is on disk. Only this process may write db.
func Open(db *badger.DB, opts Options) (*Store, error) {
	s, err := open(badgerBackend{db: db}, opts)
	if err != nil {
		return nil, err
	}
	s.db = db
	s.be = badgerBackend{db: db, known: s.knows}
	return s, nil
}

// knows reports whether the index holds hook id (active or not). Under the
// write lock it is what the store holds: this process is its only writer.
func (s *Store) knows(id string) bool {
	_, ok := s.idx.Load().targets[id]
	return ok
}

// open returns the store of be and builds the index from what be holds.
func open(be backend, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{be: be, ids: ocean.NewIDGen(opts.Rand), now: opts.Now, log: opts.Logger,
		disableAfter: max(opts.DisableAfter, 0), autoDisabled: newAutoDisabledCounter()}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.autoDisabled); err != nil {
			return nil, fmt.Errorf("open hooks: metrics: %w", err)
		}
	}
	all, err := s.ListAll()
	if err != nil {
		return nil, fmt.Errorf("open hooks: %w", err)
	}
	s.idx.Store(buildIndex(all))
	s.failing.load(all)
	return s, nil
}

// sync makes a committed management write durable: the server may open
// Badger without synced writes and sync only what must survive a crash.
func (s *Store) sync() {
	if err := s.be.sync(); err != nil {
		s.log.Error("hooks: sync to disk failed", "err", err)
	}
}

// Create stores a new hook for h.UserID with a fresh id, unless the owner
// already has limit hooks (ErrLimit). The count and the insert are one
// transaction. LatestSentAt and LatestStatus start empty.
func (s *Store) Create(h Hook, limit int) (Hook, error) {
	if !ocean.IsID(h.UserID) {
		return Hook{}, fmt.Errorf("create hook: invalid user id %q", h.UserID)
	}
	s.writeMu.Lock()
	h.ID = s.ids.Next(s.now())
	h.On = cloneOn(h.On)
	h.LatestSentAt, h.LatestStatus, h.NativeID = nil, nil, ""
	err := s.be.create(h, limit)
	if err == nil {
		s.idx.Store(s.idx.Load().with(nil, &h))
	}
	s.writeMu.Unlock()
	if err != nil {
		if errors.Is(err, ErrLimit) {
			return Hook{}, err
		}
		return Hook{}, fmt.Errorf("create hook: %w", err)
	}
	s.sync()
	return h, nil
}

// Get returns the hook with id, ErrNotFound if there is none.
func (s *Store) Get(id string) (Hook, error) {
	return s.be.get(id)
}

// Owned returns the hook with id if userID owns it, else ErrNotFound.
func (s *Store) Owned(userID, id string) (Hook, error) {
	h, err := s.Get(id)
	if err != nil {
		return Hook{}, err
	}
	if h.UserID != userID {
		return Hook{}, ErrNotFound
	}
	return h, nil
}

// Update applies p to userID's hook id in one read-modify-write transaction
// and returns the result; ErrNotFound if userID owns no such hook.
func (s *Store) Update(userID, id string, p Patch) (Hook, error) {
	return s.modify(id, func(h *Hook) error {
		if h.UserID != userID {
			return ErrNotFound
		}
		p.apply(h)
		return nil
	})
}

// errUnchanged, returned by a modify function, ends the update without a
// write; modify returns it as it is.
var errUnchanged = errors.New("hook unchanged")

// modify is the read-modify-write of every index-changing update.
func (s *Store) modify(id string, fn func(h *Hook) error) (Hook, error) {
	s.writeMu.Lock()
	old, h, err := s.be.modify(id, func(h *Hook) error {
		wasActive := h.Active
		if err := fn(h); err != nil {
			return err
		}
		if h.Active && !wasActive {
			// (Re)activation starts the auto-disable clock afresh.
			h.FailingSince, h.Failures, h.DisabledAt = nil, 0, nil
		}
		return nil
	})
	if err == nil {
		s.idx.Store(s.idx.Load().with(&old, &h))
		if h.Active && !old.Active {
			s.failing.forget(id)
		}
	}
	s.writeMu.Unlock()
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, errUnchanged) {
			return Hook{}, err
		}
		return Hook{}, fmt.Errorf("update hook %s: %w", id, err)
	}
	s.sync()
	return h, nil
}

// Delete removes userID's hook id; ErrNotFound if userID owns no such hook.
func (s *Store) Delete(userID, id string) error {
	s.writeMu.Lock()
	old, err := s.be.remove(userID, id)
	if err == nil {
		s.idx.Store(s.idx.Load().with(&old, nil))
		s.failing.forget(id)
	}
	s.writeMu.Unlock()
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("delete hook %s: %w", id, err)
	}
	s.sync()
	return nil
}

// List returns userID's hooks in creation order (Ocean's DB order).
func (s *Store) List(userID string) ([]Hook, error) {
	out, err := s.be.list(userID)
	if err != nil {
		return nil, fmt.Errorf("list hooks of %s: %w", userID, err)
	}
	return out, nil
}

// ListAll returns every hook in creation order.
func (s *Store) ListAll() ([]Hook, error) {
	out, err := s.be.all()
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	return out, nil
}

// Count returns how many hooks userID has.
func (s *Store) Count(userID string) (int, error) {
	n, err := s.be.count(userID)
	if err != nil {
		return 0, fmt.Errorf("count hooks of %s: %w", userID, err)
	}
	return n, nil
}

// Subscribed reports whether userID has an active hook on eventType. Memory
// only.
func (s *Store) Subscribed(userID, eventType string) bool {
	return s.idx.Load().subscribed(userID, eventType)
}

// AnySubscribed reports whether any active hook of anyone is on one of
// eventTypes. Memory only, O(len(eventTypes)).
func (s *Store) AnySubscribed(eventTypes ...string) bool {
	idx := s.idx.Load()
	for _, t := range eventTypes {
		if idx.typeCounts[t] > 0 {
			return true
		}
	}
	return false
}

// ActiveHooks returns where userID's active hooks on eventType deliver, in
// creation order. Memory only; the slice is the caller's.
func (s *Store) ActiveHooks(userID, eventType string) []webhook.Target {
	return s.idx.Load().active(userID, eventType)
}

// Target returns where hook hookID delivers now (read at attempt time, so an
// edited URL or secret applies to the next attempt), inactive hooks included;
// false if it no longer exists.
func (s *Store) Target(hookID string) (webhook.Target, bool) {
	t, ok := s.idx.Load().targets[hookID]
	return t, ok
}

// RecordAttempt sets the hook's latestSentAt/latestStatus after a delivery
// attempt, as Ocean does after every attempt. It is a read-modify-write in
// one transaction, serialised with the store's other writes (and retried on
// a conflict all the same), so it never loses a concurrent edit of the
// hook's other fields. It is bookkeeping, written like RecordAttempts. A
// deleted hook is left alone.
func (s *Store) RecordAttempt(hookID string, at time.Time, status int) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.be.stamp(map[string]stamp{hookID: {at: at.UTC(), status: status, succeeded: isSuccess(status)}}); err != nil {
		s.log.Error("hooks: record attempt", "hook", hookID, "err", err)
	}
}

// Deactivate turns hook hookID off (a receiver answered 410 Gone): it keeps
// its configuration but receives nothing until its owner activates it again.
// A hook already off is left as it is, without a write: a backlog of 410s
// costs one write, not one each.
func (s *Store) Deactivate(hookID string) {
	if t, ok := s.Target(hookID); ok && !t.Active {
		return
	}
	_, err := s.modify(hookID, func(h *Hook) error {
		if !h.Active {
			return errUnchanged
		}
		h.Active = false
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("hooks: deactivate", "hook", hookID, "err", err)
		return
	}
	if err == nil {
		s.log.Info("hooks: deactivated", "hook", hookID)
	}
}
