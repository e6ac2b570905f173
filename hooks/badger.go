package hooks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Keys. Every key of the package starts with "h/".
//
//	h/id/<hookID>                 the hook (JSON record)
//	h/user/<userID>/<hookID>      empty: the owner's hooks, in id (= creation) order
//	h/native/<userID>/<oceanID>   the id of the hook imported from Ocean's hook oceanID;
//	                              kept after that hook is deleted, so it is never imported again
//	h/takeover/<userID>           when the user's hooks in Ocean were all taken over
//	h/latest/<hookID>             the hook's latest attempt and run of failed attempts
//	                              (binary, encodeLatest), newer than those in its record
//
// The queue hands the latest attempts of every hook that had one over each
// second. Writing them as a small key of their own costs no read and no
// JSON of the record, and a few dozen bytes instead of the whole record in
// the store's log and tables. Every read of a record lays its h/latest key
// over it (get, all); every write of a record folds the key in (put deletes
// it, the record read through get carrying its values).
const (
	prefixHook     = "h/id/"
	prefixUser     = "h/user/"
	prefixNative   = "h/native/"
	prefixTakeover = "h/takeover/"
	prefixLatest   = "h/latest/"
)

func keyHook(id string) []byte { return []byte(prefixHook + id) }

func keyLatest(id string) []byte { return []byte(prefixLatest + id) }

func keyUserPrefix(userID string) []byte { return []byte(prefixUser + userID + "/") }

func keyUser(userID, id string) []byte { return []byte(prefixUser + userID + "/" + id) }

func keyNative(userID, oceanID string) []byte { return []byte(prefixNative + userID + "/" + oceanID) }

func keyTakeover(userID string) []byte { return []byte(prefixTakeover + userID) }

// maxConflictRetries bounds the retries of a transaction that lost a race.
const maxConflictRetries = 16

// record is the stored form of a Hook.
type record struct {
	ID           string     `json:"id"`
	UserID       string     `json:"userId"`
	Name         string     `json:"name"`
	On           []string   `json:"on"`
	URL          string     `json:"url"`
	Secret       string     `json:"secret"`
	Active       bool       `json:"active"`
	LatestSentAt *time.Time `json:"latestSentAt,omitempty"`
	LatestStatus *int       `json:"latestStatus,omitempty"`
	NativeID     string     `json:"nativeId,omitempty"`
	FailingSince *time.Time `json:"failingSince,omitempty"`
	Failures     int        `json:"failures,omitempty"`
	DisabledAt   *time.Time `json:"disabledAt,omitempty"`
}

func encode(h Hook) ([]byte, error) {
	return json.Marshal(record{ID: h.ID, UserID: h.UserID, Name: h.Name, On: h.On, URL: h.URL,
		Secret: h.Secret, Active: h.Active, LatestSentAt: h.LatestSentAt, LatestStatus: h.LatestStatus,
		NativeID: h.NativeID, FailingSince: h.FailingSince, Failures: h.Failures, DisabledAt: h.DisabledAt})
}

func decode(b []byte) (Hook, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Hook{}, fmt.Errorf("decode hook: %w", err)
	}
	return Hook{ID: r.ID, UserID: r.UserID, Name: r.Name, On: cloneOn(r.On), URL: r.URL, Secret: r.Secret,
		Active: r.Active, LatestSentAt: r.LatestSentAt, LatestStatus: r.LatestStatus, NativeID: r.NativeID,
		FailingSince: r.FailingSince, Failures: r.Failures, DisabledAt: r.DisabledAt}, nil
}

// badgerBackend keeps hooks in a Badger database that one process holds.
// The server may open it without synced writes: sync (called by Store after
// every management write, outside its write lock) is what makes those
// durable, while stamp relies on the database's own setting.
type badgerBackend struct {
	db *badger.DB
	// known reports whether a hook exists, from the Store's index, which
	// under the Store's write lock matches the database (nil: look it up).
	// stamp asks it rather than reading each stamped hook's key every
	// interval, which on a store whose mapped pages were dropped means a
	// disk read per hook, each stalling the process.
	known func(id string) bool
}

var _ backend = badgerBackend{}

// update runs fn in a read-write transaction and commits it, starting over
// when the commit lost a race with another writer of the same keys.
func (b badgerBackend) update(fn func(txn *badger.Txn) error) error {
	for range maxConflictRetries {
		err := b.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return badger.ErrConflict
}

func (b badgerBackend) sync() error { return b.db.Sync() }

// exists reports whether hook id is stored: known's answer, or a lookup.
func (b badgerBackend) exists(txn *badger.Txn, id string) (bool, error) {
	if b.known != nil {
		return b.known(id), nil
	}
	_, err := txn.Get(keyHook(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// get reads hook id, its h/latest key laid over its record.
func get(txn *badger.Txn, id string) (Hook, error) {
	item, err := txn.Get(keyHook(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Hook{}, ErrNotFound
	}
	if err != nil {
		return Hook{}, err
	}
	var h Hook
	err = item.Value(func(v []byte) error {
		var err error
		h, err = decode(v)
		return err
	})
	if err != nil {
		return Hook{}, err
	}
	item, err = txn.Get(keyLatest(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return h, nil
	}
	if err != nil {
		return Hook{}, err
	}
	return h, item.Value(func(v []byte) error { return overlayLatest(&h, v) })
}

// put writes h's record, which holds its latest attempt from now on: the
// h/latest key, if any, goes (h was read through get, so it carries it).
func put(txn *badger.Txn, h Hook) error {
	b, err := encode(h)
	if err != nil {
		return err
	}
	if err := txn.Set(keyHook(h.ID), b); err != nil {
		return err
	}
	return txn.Delete(keyLatest(h.ID))
}

// latestVersion heads an h/latest value.
const latestVersion = 1

// encodeLatest is the h/latest value of a stamp with its run: a version
// byte, then varints of the attempt's start (Unix ns), its status, the run's
// start (Unix ns; 0: no run) and its failures.
func encodeLatest(st stamp) []byte {
	b := make([]byte, 1, 1+4*binary.MaxVarintLen64)
	b[0] = latestVersion
	b = binary.AppendVarint(b, st.at.UnixNano())
	b = binary.AppendVarint(b, int64(st.status))
	var since int64
	if st.failingSince != nil {
		since = st.failingSince.UnixNano()
	}
	b = binary.AppendVarint(b, since)
	return binary.AppendVarint(b, int64(st.failures))
}

// overlayLatest sets h's latest attempt and run of failed attempts from an
// h/latest value.
func overlayLatest(h *Hook, v []byte) error {
	if len(v) == 0 || v[0] != latestVersion {
		return fmt.Errorf("decode latest attempt of hook %s: unknown format", h.ID)
	}
	var f [4]int64
	rest := v[1:]
	for i := range f {
		x, n := binary.Varint(rest)
		if n <= 0 {
			return fmt.Errorf("decode latest attempt of hook %s: truncated", h.ID)
		}
		f[i], rest = x, rest[n:]
	}
	at, status := time.Unix(0, f[0]).UTC(), int(f[1])
	h.LatestSentAt, h.LatestStatus = &at, &status
	h.FailingSince, h.Failures = nil, int(f[3])
	if f[2] != 0 {
		since := time.Unix(0, f[2]).UTC()
		h.FailingSince = &since
	}
	return nil
}

func (b badgerBackend) get(id string) (Hook, error) {
	var h Hook
	err := b.db.View(func(txn *badger.Txn) error {
		var err error
		h, err = get(txn, id)
		return err
	})
	return h, err
}

func (b badgerBackend) create(h Hook, limit int) error {
	return b.update(func(txn *badger.Txn) error {
		if count(txn, h.UserID) >= limit {
			return ErrLimit
		}
		if err := put(txn, h); err != nil {
			return err
		}
		return txn.Set(keyUser(h.UserID, h.ID), nil)
	})
}

func (b badgerBackend) modify(id string, fn func(h *Hook) error) (old, h Hook, err error) {
	err = b.update(func(txn *badger.Txn) error {
		var err error
		if old, err = get(txn, id); err != nil {
			return err
		}
		h = old
		h.On = cloneOn(old.On)
		if err := fn(&h); err != nil {
			return err
		}
		return put(txn, h)
	})
	return old, h, err
}

func (b badgerBackend) remove(userID, id string) (Hook, error) {
	var old Hook
	err := b.update(func(txn *badger.Txn) error {
		var err error
		if old, err = get(txn, id); err != nil {
			return err
		}
		if old.UserID != userID {
			return ErrNotFound
		}
		if err := txn.Delete(keyHook(id)); err != nil {
			return err
		}
		if err := txn.Delete(keyLatest(id)); err != nil {
			return err
		}
		return txn.Delete(keyUser(old.UserID, id))
	})
	return old, err
}

func (b badgerBackend) list(userID string) ([]Hook, error) {
	out := []Hook{}
	err := b.db.View(func(txn *badger.Txn) error {
		prefix := keyUserPrefix(userID)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			h, err := get(txn, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, h)
		}
		return nil
	})
	return out, err
}

func (b badgerBackend) all() ([]Hook, error) {
	out := []Hook{}
	err := b.db.View(func(txn *badger.Txn) error {
		latest := map[string][]byte{}
		err := eachValue(txn, prefixLatest, func(k, v []byte) error {
			latest[string(k[len(prefixLatest):])] = bytes.Clone(v)
			return nil
		})
		if err != nil {
			return err
		}
		return eachValue(txn, prefixHook, func(_, v []byte) error {
			h, err := decode(v)
			if err != nil {
				return err
			}
			if l, ok := latest[h.ID]; ok {
				if err := overlayLatest(&h, l); err != nil {
					return err
				}
			}
			out = append(out, h)
			return nil
		})
	})
	return out, err
}

// eachValue calls fn with every key under prefix and its value (valid
// during the call only).
func eachValue(txn *badger.Txn, prefix string, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

func (b badgerBackend) count(userID string) (int, error) {
	var n int
	err := b.db.View(func(txn *badger.Txn) error {
		n = count(txn, userID)
		return nil
	})
	return n, err
}

func count(txn *badger.Txn, userID string) int {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: keyUserPrefix(userID)})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// importNative writes h/native/<userID>/<oceanID> in the same transaction as
// the hook; the key outlives the hook.
func (b badgerBackend) importNative(h Hook, fresh func() string) (id string, imported bool, err error) {
	err = b.update(func(txn *badger.Txn) error {
		imported = false
		earlier, found, err := nativeHookID(txn, h.UserID, h.NativeID)
		if err != nil || found {
			id = earlier
			return err
		}
		h.ID = h.NativeID
		if _, err := txn.Get(keyHook(h.ID)); err == nil {
			h.ID = fresh()
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := put(txn, h); err != nil {
			return err
		}
		if err := txn.Set(keyUser(h.UserID, h.ID), nil); err != nil {
			return err
		}
		id, imported = h.ID, true
		return txn.Set(keyNative(h.UserID, h.NativeID), []byte(h.ID))
	})
	return id, imported, err
}

func (b badgerBackend) imported(userID, oceanID string) (id string, found bool, err error) {
	err = b.db.View(func(txn *badger.Txn) error {
		id, found, err = nativeHookID(txn, userID, oceanID)
		return err
	})
	return id, found, err
}

func nativeHookID(txn *badger.Txn, userID, oceanID string) (string, bool, error) {
	item, err := txn.Get(keyNative(userID, oceanID))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, err := item.ValueCopy(nil)
	return string(v), err == nil, err
}

func (b badgerBackend) takenOver(userID string) (bool, error) {
	var done bool
	err := b.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(keyTakeover(userID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		done = err == nil
		return err
	})
	return done, err
}

func (b badgerBackend) markTakenOver(userID string, at time.Time) error {
	v := []byte(at.UTC().Format(time.RFC3339))
	return b.update(func(txn *badger.Txn) error {
		return txn.Set(keyTakeover(userID), v)
	})
}

// stamp does not call Sync, but it is a commit like any other: on a
// database opened with SyncWrites (queue.BadgerOptions, what the server
// uses) that commit waits for its own sync of Badger's log. A stamp with
// its run is written as the hook's h/latest key, without reading or
// rewriting its record, for a hook that exists (known); one without
// (RecordAttempt) rewrites the record.
func (b badgerBackend) stamp(latest map[string]stamp) (map[string]time.Time, error) {
	return nil, b.update(func(txn *badger.Txn) error {
		for id, st := range latest {
			if st.withRun {
				exists, err := b.exists(txn, id)
				if err != nil {
					return err
				}
				if !exists {
					continue // deleted: never brought back
				}
				if err := txn.Set(keyLatest(id), encodeLatest(st)); err != nil {
					return err
				}
				continue
			}
			h, err := get(txn, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			st.apply(&h)
			if err := put(txn, h); err != nil {
				return err
			}
		}
		return nil
	})
}
