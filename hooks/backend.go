package hooks

import (
	"context"
	"time"
)

// backend is where a Store keeps its hooks: Badger (badgerBackend) or
// PostgreSQL (pgBackend). Every method that writes is one transaction, and
// a method that fails wrote nothing. Ids, validation, the index, the
// takenOver cache, the runs of failed attempts and the metrics live in Store
// and are the same for both.
type backend interface {
	// all returns every hook in id (= creation) order.
	all() ([]Hook, error)
	// get returns the hook with id; ErrNotFound if there is none.
	get(id string) (Hook, error)
	// list returns userID's hooks in id order.
	list(userID string) ([]Hook, error)
	// count returns how many hooks userID has.
	count(userID string) (int, error)
	// create stores h (its id is new) unless its owner already has limit
	// hooks (ErrLimit), counted in the same transaction as the insert and
	// so that no concurrent create of that owner, through any Store on
	// the same data, can pass the limit with it.
	create(h Hook, limit int) error
	// modify reads hook id, lets fn change it and writes it back, in one
	// transaction; it returns the hook before and after. An error of fn
	// (ErrNotFound, errUnchanged) ends it without a write and is returned
	// as it is. fn may run more than once (a transaction that lost a race
	// starts over).
	modify(id string, fn func(h *Hook) error) (old, new Hook, err error)
	// remove deletes userID's hook id and returns it; ErrNotFound if
	// userID owns no such hook.
	remove(userID, id string) (Hook, error)
	// importNative stores h under the id h.NativeID, or fresh() when a
	// hook has that id, unless Ocean's hook (h.UserID, h.NativeID) was
	// imported before, even if that import was deleted since. It returns
	// the id of the stored hook (of the earlier import when there was one)
	// and whether this call stored it; the check and the insert are one
	// transaction, so two concurrent imports store one hook.
	importNative(h Hook, fresh func() string) (id string, imported bool, err error)
	// imported returns the id of the hook imported from Ocean's hook
	// oceanID of userID, if there was one.
	imported(userID, oceanID string) (id string, found bool, err error)
	// takenOver reports whether markTakenOver ran for userID.
	takenOver(userID string) (bool, error)
	// markTakenOver records that userID's hooks in Ocean were all taken
	// over, at at.
	markTakenOver(userID string, at time.Time) error
	// stamp writes the latest attempts of many hooks (bookkeeping: it need
	// not be durable before the next management write); hooks that no
	// longer exist are left alone. ended names the hooks whose run in
	// latest a success stored before had already ended (another Store's,
	// on data several Stores share), with that success's start; nil where
	// one Store attempts every hook (Badger).
	stamp(latest map[string]stamp) (ended map[string]time.Time, err error)
	// sync makes the management writes committed so far durable.
	sync() error
}

// follower is a backend whose data other processes change too: Store.Run
// hands it the index's reloads.
type follower interface {
	// follow blocks until ctx ends. It calls reloadAll after every
	// (re)connect, before changed is called for changes made since, and
	// changed with the id of each hook that any process created, changed
	// or deleted, or whose stored run of failed attempts a success ended.
	follow(ctx context.Context, reloadAll func(ctx context.Context) error, changed func(id string)) error
}

// stamp is what a batch of latest attempts writes on one hook.
type stamp struct {
	at     time.Time // UTC
	status int
	// succeeded: the attempt at at succeeded (isSuccess). PostgreSQL
	// keeps the latest such start, which ends every Store's run of failed
	// attempts that began at or before it (pgBackend.stamp).
	succeeded bool
	// withRun: also store the hook's run of failed attempts (failingSince,
	// failures), as Attempted counted it.
	withRun      bool
	failingSince *time.Time
	failures     int
}

// isSuccess reports whether an attempt answered with status succeeded, as
// the queue counts it (2xx).
func isSuccess(status int) bool { return status >= 200 && status <= 299 }

// apply writes s on h the way one Store that makes every attempt of h sees
// it (Badger): the latest attempt, and the run of failed attempts as s
// carries it.
func (s stamp) apply(h *Hook) {
	at, status := s.at, s.status
	h.LatestSentAt, h.LatestStatus = &at, &status
	if s.withRun {
		h.FailingSince, h.Failures = s.failingSince, s.failures
	}
}
