package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// Ocean is what the takeover asks of Ocean itself (ocean.Client, which calls
// Ocean's own API at the upstream URL, never the sidecar), with the
// caller's token.
type Ocean interface {
	Call(ctx context.Context, endpoint, token string, params any) ([]byte, error)
}

// TakeoverHeader is set on an answer of the management API while the
// caller's hooks in Ocean are imported but Ocean's copies are not all
// switched off yet (they still fire from Ocean). Its value is
// TakeoverPending. A header, not a field: Ocean's answers keep their exact
// shape (204s have no body at all), and Ocean's web client and API clients
// ignore headers they do not know.
const (
	TakeoverHeader  = "X-Oceanhooks-Takeover"
	TakeoverPending = "pending"
)

// How long a user whose takeover could not finish is left alone before the
// next try: after a token without write:account (a native token tries at
// once all the same), and after Ocean failed.
const (
	takeoverDeniedBackoff = time.Minute
	takeoverFailedBackoff = time.Minute
	takeoverSweepAt       = 4096
	takeoverTimeout       = 30 * time.Second
)

// Ocean's endpoints the takeover calls.
const (
	endpointNativeList   = "i/webhooks/list"
	endpointNativeUpdate = "i/webhooks/update"
)

// takeover moves a user's hooks from Ocean into the store the first time
// the user reaches the management API: it reads them with the caller's
// token (i/webhooks/list), imports each (Store.Import: once, whatever
// happens), then switches Ocean's copy off (i/webhooks/update active:false)
// so that it no longer fires from Ocean and stays recoverable there. Hooks
// with event types oceanhooks does not send stay in Ocean untouched. When
// every imported hook is off in Ocean, the user is marked taken over and
// never costs an Ocean call again.
type takeover struct {
	store *Store
	ocean Ocean
	auth  Authenticator
	log   *slog.Logger
	now   func() time.Time
	m     takeoverMetrics

	seed  maphash.Seed
	locks [64]sync.Mutex // one user's takeovers run one at a time

	mu    sync.Mutex
	retry map[string]retryAt // users whose last takeover could not finish
}

type retryAt struct {
	at     time.Time
	denied bool // the token may not change hooks: native tokens need not wait
}

type takeoverMetrics struct {
	hooks *prometheus.CounterVec
	users *prometheus.CounterVec
}

func newTakeoverMetrics(reg prometheus.Registerer) takeoverMetrics {
	m := takeoverMetrics{
		hooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_takeover_hooks_total",
			Help: "Users' hooks in Ocean met by the takeover, by outcome: imported into oceanhooks, deactivated in Ocean, or kept in Ocean (event types oceanhooks does not send).",
		}, []string{"outcome"}),
		users: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_takeover_users_total",
			Help: "Takeovers of a user's hooks in Ocean, by outcome: complete; pending (imported, but the token may not switch Ocean's copies off: write:account); failed (Ocean could not be read or did not switch them off).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"imported", "deactivated", "kept"} {
		m.hooks.WithLabelValues(o)
	}
	for _, o := range []string{"complete", "pending", "failed"} {
		m.users.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.hooks, m.users)
	}
	return m
}

func newTakeover(store *Store, oc Ocean, auth Authenticator, log *slog.Logger, now func() time.Time, reg prometheus.Registerer) *takeover {
	return &takeover{store: store, ocean: oc, auth: auth, log: log, now: now, m: newTakeoverMetrics(reg),
		seed: maphash.MakeSeed(), retry: map[string]retryAt{}}
}

// nativeHook is a hook as Ocean's i/webhooks/list shows it.
type nativeHook struct {
	ID           string     `json:"id"`
	UserID       string     `json:"userId"`
	Name         string     `json:"name"`
	On           []string   `json:"on"`
	URL          string     `json:"url"`
	Secret       string     `json:"secret"`
	Active       bool       `json:"active"`
	LatestSentAt *time.Time `json:"latestSentAt"`
	LatestStatus *int       `json:"latestStatus"`
}

// run takes over me's hooks with token, unless that is done. pending says
// the answer should carry TakeoverHeader. A non-nil error is what the call
// answers instead: Ocean could not tell which hooks the user has there, and
// showing none would invite them to create every hook again.
func (t *takeover) run(ctx context.Context, me ocean.Me, token string) (pending bool, oerr *ocean.Error) {
	done, err := t.store.TakenOver(me.ID)
	if err != nil {
		t.log.Error("takeover: read state", "user", me.ID, "err", err)
		return false, ocean.ErrInternal
	}
	if done {
		return false, nil
	}
	lock := &t.locks[maphash.String(t.seed, me.ID)%uint64(len(t.locks))]
	lock.Lock()
	defer lock.Unlock()
	if done, err = t.store.TakenOver(me.ID); err != nil || done {
		return false, nil
	}
	native := isNativeToken(token)
	if t.waiting(me.ID, native) {
		return true, nil
	}
	// The work outlives a client that goes away: a takeover cut between its
	// steps is finished by the next call anyway, but need not be.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), takeoverTimeout)
	defer cancel()

	body, err := t.ocean.Call(ctx, endpointNativeList, token, nil)
	if err != nil {
		var oe *ocean.Error
		if errors.As(err, &oe) && oe.Code == ocean.ErrPermissionDenied.Code {
			return false, nil // this token may not read the hooks: nothing to take
		}
		t.failed(me.ID, "list", err)
		return false, takeoverError(err)
	}
	var hooks []nativeHook
	if err := json.Unmarshal(body, &hooks); err != nil {
		t.failed(me.ID, "list", err)
		return false, ocean.ErrUpstreamUnavailable
	}
	var active []string // imported hooks still active in Ocean
	for _, n := range hooks {
		if n.UserID != me.ID || !ocean.IsID(n.ID) {
			t.log.Warn("takeover: Ocean listed a hook that is not the caller's", "user", me.ID)
			continue
		}
		if bad := UnsupportedTypes(n.On); len(bad) > 0 {
			t.m.hooks.WithLabelValues("kept").Inc()
			t.log.Info("takeover: hook stays in Ocean: event types oceanhooks does not send",
				"user", me.ID, "oceanHook", n.ID, "types", bad)
			continue
		}
		id, imported, err := t.store.Import(Hook{UserID: me.ID, Name: n.Name, On: n.On, URL: n.URL, Secret: n.Secret,
			Active: n.Active, LatestSentAt: n.LatestSentAt, LatestStatus: n.LatestStatus, NativeID: n.ID})
		if err != nil {
			t.log.Error("takeover: import", "user", me.ID, "oceanHook", n.ID, "err", err)
			return false, ocean.ErrInternal
		}
		if imported {
			t.m.hooks.WithLabelValues("imported").Inc()
			t.log.Info("takeover: imported a hook from Ocean", "user", me.ID, "oceanHook", n.ID, "hook", id)
		}
		if n.Active {
			active = append(active, n.ID)
		}
	}
	if len(active) > 0 {
		if !native {
			// An app token changes hooks only with write:account (asked
			// of Ocean once per cache period, not once per hook).
			if err := t.auth.CheckWriteAccount(ctx, token); err != nil {
				return true, t.notDeactivated(me.ID, err)
			}
		}
		for _, id := range active {
			_, err := t.ocean.Call(ctx, endpointNativeUpdate, token, map[string]any{"webhookId": id, "active": false})
			var oe *ocean.Error
			switch {
			case err == nil:
				t.m.hooks.WithLabelValues("deactivated").Inc()
			case errors.As(err, &oe) && oe.Code == ocean.ErrNoSuchWebhookUpdate.Code:
				// deleted in Ocean meanwhile: nothing fires from it
			default:
				return true, t.notDeactivated(me.ID, err)
			}
		}
	}
	if err := t.store.MarkTakenOver(me.ID); err != nil {
		t.log.Error("takeover: record", "user", me.ID, "err", err)
		return false, nil // done all the same; the next call finds nothing to do
	}
	t.mu.Lock()
	delete(t.retry, me.ID)
	t.mu.Unlock()
	t.m.users.WithLabelValues("complete").Inc()
	t.log.Info("takeover: complete", "user", me.ID, "deactivated", len(active))
	return false, nil
}

// waiting reports whether the user's last takeover failed recently enough
// that this call should not try again; a token that may change hooks does
// not wait for one that could not.
func (t *takeover) waiting(userID string, native bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.retry[userID]
	if !ok || !t.now().Before(r.at) {
		return false
	}
	return !(r.denied && native)
}

// notDeactivated records that Ocean's copies stay active for now: err is
// Ocean's refusal of the token (pending: a token with write:account
// finishes the job), or a failure (retried later). It returns nil: the call
// itself goes on, since nothing is lost meanwhile.
func (t *takeover) notDeactivated(userID string, err error) *ocean.Error {
	var oe *ocean.Error
	denied := errors.As(err, &oe) && ocean.IsRefusal(oe)
	backoff, outcome := takeoverFailedBackoff, "failed"
	if denied {
		backoff, outcome = takeoverDeniedBackoff, "pending"
		t.log.Info("takeover: hooks imported, but this token may not switch them off in Ocean (write:account); the next call with a token that may does",
			"user", userID)
	} else if oe != nil && oe.Code == ocean.ErrWebhookLimitExceeded.Code {
		t.log.Warn("takeover: hooks imported, but Ocean refuses to change any hook of a user who holds more than their webhook limit there; "+
			"switch them off with `oceanhooks import --deactivate`", "user", userID)
	} else {
		t.log.Warn("takeover: hooks imported, but Ocean did not switch them off; retried later", "user", userID, "err", err)
	}
	t.m.users.WithLabelValues(outcome).Inc()
	t.remember(userID, retryAt{at: t.now().Add(backoff), denied: denied})
	return nil
}

func (t *takeover) failed(userID, step string, err error) {
	t.log.Warn("takeover: Ocean could not tell the user's hooks", "user", userID, "step", step, "err", err)
	t.m.users.WithLabelValues("failed").Inc()
}

func (t *takeover) remember(userID string, r retryAt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.retry[userID] = r
	if len(t.retry) > takeoverSweepAt {
		now := t.now()
		for u, x := range t.retry {
			if !now.Before(x.at) {
				delete(t.retry, u)
			}
		}
	}
}

// takeoverError is the answer to a call whose takeover could not read the
// user's hooks in Ocean: Ocean's refusal of the token as it is, else Ocean
// is unavailable.
func takeoverError(err error) *ocean.Error {
	var oe *ocean.Error
	if errors.As(err, &oe) && (ocean.IsRefusal(oe) || oe == ocean.ErrUpstreamTimeout || oe == ocean.ErrUpstreamUnavailable) {
		return oe
	}
	return ocean.ErrUpstreamUnavailable
}
