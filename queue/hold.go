package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// Held deliveries wait for a second source to confirm their event (Ocean's
// event stream confirming what the API tap derived). They are stored like
// ready ones, durably, but sit outside the ready index until Confirm makes
// them ready with the confirming body, or Settle ends the hold.
//
//	q/w/<until:8><id>     hold index, by the time the hold ends
//	q/k/<key>/<id>        held deliveries of one event key
//	q/e/<key>             the event key's state, with a TTL: 'h' held; 'c' confirmed; or
//	                      'n' and a 4-byte count of confirmed occurrences no hold matched yet
//
// <key> is the hex SHA-256 of webhook.Event.Key, so any key is safe in a
// Badger key. Hold and Confirm both read and write q/e/<key>, so Badger's
// conflict detection orders them: whichever commits second sees the first.
//
// An event that does not recur (a note, a mention: its key names a note) is
// confirmed once; later events of its key are repeats. A recurring event (a
// follow: its key names two users, who may follow, unfollow and follow again)
// is matched occurrence by occurrence: a confirmation releases the oldest
// held occurrence, or, when none is held, leaves a credit that the next hold
// of the key uses up instead of holding. Forget turns a confirmed key back
// into an unknown one, for an event that can happen again once undone (a
// reaction removed, or changed).
const (
	pHeld      = "q/w/"
	pHeldByKey = "q/k/"
	pEventKey  = "q/e/"

	// StateHeld is a delivery waiting for its event to be confirmed.
	StateHeld = "held"

	keyHeld      = 'h'
	keyConfirmed = 'c'
	keyCredits   = 'n'
	maxConflicts = 64
)

// keyState is the decoded q/e/<key>.
type keyState struct {
	mode    byte   // 0 (unknown key), keyHeld, keyConfirmed or keyCredits
	credits uint32 // with keyCredits
}

func (k keyState) value() []byte {
	if k.mode != keyCredits {
		return []byte{k.mode}
	}
	return binary.BigEndian.AppendUint32([]byte{keyCredits}, k.credits)
}

// held is the key's state after a Hold of an occurrence of its event
// (recurs: the event's Recurs), and whether that occurrence is skipped: an
// event that does not recur is skipped once confirmed (the state stays),
// a recurring one uses up a credit; otherwise the key is held.
func (k keyState) held(recurs bool) (next keyState, skip bool) {
	switch {
	case !recurs && k.mode == keyConfirmed:
		return k, true
	case recurs && k.mode == keyCredits && k.credits > 0:
		return keyState{mode: keyCredits, credits: k.credits - 1}, true
	}
	return keyState{mode: keyHeld}, false
}

// confirmed is the key's state after a confirmation of its event that
// released released held deliveries: confirmed; for a recurring event,
// still held when it released some (other occurrences may be held), else
// one more credit.
func (k keyState) confirmed(recurs bool, released int) keyState {
	switch {
	case !recurs:
		return keyState{mode: keyConfirmed}
	case released > 0:
		return keyState{mode: keyHeld}
	case k.mode == keyCredits:
		return keyState{mode: keyCredits, credits: k.credits + 1}
	}
	return keyState{mode: keyCredits, credits: 1}
}

func hashKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}

func keyHeldAt(until int64, id string) []byte { return withTime(pHeld, until, id) }
func keyHeldByKey(h, id string) []byte        { return []byte(pHeldByKey + h + "/" + id) }
func heldByKeyPrefix(h string) []byte         { return []byte(pHeldByKey + h + "/") }
func keyEvent(h string) []byte                { return []byte(pEventKey + h) }

// Hold stores one held delivery per active subscribed hook of each event,
// each event by its Key, until until; an event whose key was confirmed less
// than remember ago is not stored at all (its twin came first). Like Enqueue
// it returns once the deliveries are on disk, or gives up when ctx ends.
func (q *Queue) Hold(ctx context.Context, events []webhook.Event, until time.Time, remember time.Duration) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := needKeys("hold", events); err != nil {
		return 0, err
	}
	items, err := q.prepare(events)
	if err != nil || len(items) == 0 {
		return 0, err
	}
	ms := until.UnixMilli()
	for i := range items {
		items[i].rec.State, items[i].rec.Due = StateHeld, ms
	}
	// Badger's TTLs run on the wall clock: the key outlives the hold by
	// remember, measured from the queue's clock.
	ttl := max(until.Sub(q.opts.Now()), 0) + remember
	counted := func(n int) {
		q.held.Add(int64(n))
		q.m.enqueued.Add(float64(n))
		q.mu.Lock()
		if q.heldFrom != nil && bytes.Compare(keyHeldAt(ms, ""), q.heldFrom) < 0 {
			q.heldFrom = nil // a hold that ends before where Settle resumes: scan from the start again
		}
		q.mu.Unlock()
	}
	var stored, soloStored int
	return q.await(ctx, "hold", func(txn *badger.Txn) (err error) {
		stored, err = holdApply(txn, items, ttl)
		return err
	}, func() error {
		// Too many for one transaction: one event's deliveries (an
		// occurrence, decided together) per transaction, each counted
		// once it is on disk.
		stored, soloStored = 0, 0
		for len(items) > 0 {
			n := 1
			for n < len(items) && items[n].occ == items[0].occ {
				n++
			}
			var got int
			err := q.update(func(txn *badger.Txn) (err error) {
				got, err = holdApply(txn, items[:n], ttl)
				return err
			})
			if err != nil {
				return err
			}
			counted(got)
			soloStored += got
			items = items[n:]
		}
		return nil
	}, func() int {
		counted(stored)
		return stored + soloStored
	})
}

// needKeys refuses events of which one has no Key (Hold and Confirm match
// events by it).
func needKeys(what string, events []webhook.Event) error {
	for _, ev := range events {
		if ev.Key == "" {
			return fmt.Errorf("%s %s: event without a key", what, ev.Type)
		}
	}
	return nil
}

// await hands the committer an urgent op and waits for its commit (then
// after counts what it stored) or for ctx. A caller that stops waiting
// leaves the op to be committed all the same. solo writes the op in several
// transactions when it is too big for one (see op).
func (q *Queue) await(ctx context.Context, what string, apply func(txn *badger.Txn) error, solo func() error, after func() int) (int, error) {
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	q.commits.submit(&op{urgent: true, apply: apply, solo: solo, done: func(err error) {
		n := 0
		if err == nil {
			n = after()
		}
		done <- result{n, err}
	}})
	select {
	case r := <-done:
		if r.err != nil {
			return 0, fmt.Errorf("%s: %w", what, r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		q.m.abandoned.Inc()
		return 0, fmt.Errorf("%s: gave up waiting for the disk: %w", what, ctx.Err())
	}
}

// holdApply writes items as held deliveries, except the occurrences whose
// twin came first, and returns how many it stored.
func holdApply(txn *badger.Txn, items []pending, ttl time.Duration) (int, error) {
	stored := 0
	skip := map[string]bool{} // by occurrence: its twin came first
	decided := map[string]bool{}
	for _, it := range items {
		h := hashKey(it.key)
		if !decided[it.occ] {
			decided[it.occ] = true
			st, err := eventKeyState(txn, h)
			if err != nil {
				return 0, err
			}
			st, skip[it.occ] = st.held(it.recurs)
			if st.mode == keyConfirmed {
				continue // unchanged
			}
			if err := txn.SetEntry(badger.NewEntry(keyEvent(h), st.value()).WithTTL(ttl)); err != nil {
				return 0, err
			}
		}
		if skip[it.occ] {
			continue
		}
		rec := it.rec
		rec.Key, rec.Occ = h, it.occ
		if err := putRecord(txn, it.id, rec); err != nil {
			return 0, err
		}
		for _, e := range [][2][]byte{
			{keyBody(it.id), it.body},
			{keyHook(rec.Hook, it.id), nil},
			{keyHeldAt(rec.Due, it.id), nil},
			{keyHeldByKey(h, it.id), nil},
		} {
			if err := txn.Set(e[0], e[1]); err != nil {
				return 0, err
			}
		}
		stored++
	}
	return stored, nil
}

// Confirm takes events from the confirming source, each by its Key. The held
// deliveries of an event get its body and become ready at once, keeping
// their eventIds; an event with nothing held is stored as new deliveries; an
// event whose key was already confirmed is a repeat and is ignored. The key
// is remembered as confirmed for remember, so a Hold of it after this one
// stores nothing. It returns once everything is on disk.
func (q *Queue) Confirm(ctx context.Context, events []webhook.Event, remember time.Duration) (ConfirmResult, error) {
	if err := ctx.Err(); err != nil {
		return ConfirmResult{}, err
	}
	if err := needKeys("confirm", events); err != nil {
		return ConfirmResult{}, err
	}
	var (
		res      ConfirmResult
		released []confirmed
		fresh    []pending
	)
	counted := func(released []confirmed, fresh []pending) {
		q.held.Add(-int64(len(released)))
		q.readyKeys.Add(int64(len(released) + len(fresh)))
		q.m.enqueued.Add(float64(len(fresh)))
		refs := map[string][]readyRef{}
		for _, c := range released {
			refs[c.rec.Hook] = append(refs[c.rec.Hook], readyRef{c.rec.Due, c.id})
		}
		for _, it := range fresh {
			refs[it.rec.Hook] = append(refs[it.rec.Hook], readyRef{it.rec.Due, it.id})
		}
		q.notify(refs)
	}
	_, err := q.await(ctx, "confirm", func(txn *badger.Txn) (err error) {
		res, released, fresh, err = q.confirmApply(txn, events, remember)
		return err
	}, func() error {
		// Too many for one transaction: one event per transaction, each
		// counted and scheduled once it is on disk.
		res, released, fresh = ConfirmResult{}, nil, nil
		for _, ev := range events {
			var (
				r   ConfirmResult
				rel []confirmed
				fr  []pending
			)
			err := q.update(func(txn *badger.Txn) (err error) {
				r, rel, fr, err = q.confirmApply(txn, []webhook.Event{ev}, remember)
				return err
			})
			if err != nil {
				return err
			}
			counted(rel, fr)
			res.Released, res.New, res.Repeats = res.Released+r.Released, res.New+r.New, res.Repeats+r.Repeats
		}
		return nil
	}, func() int {
		counted(released, fresh)
		return 0
	})
	if err != nil {
		return ConfirmResult{}, err
	}
	return res, nil
}

// Forget ends the confirmation of each event key in keys that is
// remembered as confirmed, so that the next Confirm of the key stores its
// event as new (a reaction removed, or changed, is a new reaction when it
// is made again). A key that is held, has credits or is unknown is left as
// it is. It returns once the change is on disk.
func (q *Queue) Forget(ctx context.Context, keys []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := q.await(ctx, "forget", func(txn *badger.Txn) error {
		for _, k := range keys {
			h := hashKey(k)
			st, err := eventKeyState(txn, h)
			if err != nil {
				return err
			}
			if st.mode != keyConfirmed {
				continue
			}
			if err := txn.Delete(keyEvent(h)); err != nil {
				return err
			}
		}
		return nil
	}, nil, func() int { return 0 })
	return err
}

// ConfirmResult counts what Confirm did.
type ConfirmResult struct {
	Released int // held deliveries made ready with the confirming body
	New      int // deliveries stored for events nobody held
	Repeats  int // events whose key was already confirmed
}

type confirmed struct {
	id  string
	rec record
}

// confirmApply releases the held deliveries of events and stores new ones
// for the events nobody held.
func (q *Queue) confirmApply(txn *badger.Txn, events []webhook.Event, remember time.Duration) (res ConfirmResult, released []confirmed, fresh []pending, err error) {
	ms := q.opts.Now().UnixMilli()
	err = func() error {
		seen := map[string]bool{}
		for _, ev := range events {
			h := hashKey(ev.Key)
			st, err := eventKeyState(txn, h)
			if err != nil {
				return err
			}
			if !ev.Recurs && (st.mode == keyConfirmed || seen[h]) {
				res.Repeats++
				continue
			}
			seen[h] = true
			var ids []string
			if st.mode == keyHeld {
				if ids, err = heldIDs(txn, h); err != nil {
					return err
				}
			}
			occ := "" // a recurring event releases the oldest held occurrence only
			n := 0
			for _, id := range ids {
				rec, err := getRecord(txn, id)
				if errors.Is(err, badger.ErrKeyNotFound) {
					if err := txn.Delete(keyHeldByKey(h, id)); err != nil {
						return err
					}
					continue
				}
				if err != nil {
					return err
				}
				if rec.State != StateHeld || (ev.Recurs && occ != "" && rec.Occ != occ) {
					continue
				}
				if ev.Recurs && occ == "" {
					occ = rec.Occ
				}
				body, err := q.envelope(rec, ev.Body)
				if err != nil {
					return err
				}
				held := rec.Due
				rec.State, rec.Due = webhook.StateReady, ms
				for _, k := range [][]byte{keyHeldAt(held, id), keyHeldByKey(h, id)} {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				if err := putRecord(txn, id, rec); err != nil {
					return err
				}
				if err := txn.Set(keyBody(id), body); err != nil {
					return err
				}
				if err := txn.Set(keyReady(rec.Hook, ms, id), nil); err != nil {
					return err
				}
				released = append(released, confirmed{id, rec})
				n++
			}
			next := st.confirmed(ev.Recurs, n)
			if err := txn.SetEntry(badger.NewEntry(keyEvent(h), next.value()).WithTTL(remember)); err != nil {
				return err
			}
			if n > 0 {
				res.Released += n
				continue
			}
			items, err := q.prepare([]webhook.Event{ev})
			if err != nil {
				return err
			}
			for _, it := range items {
				if err := putPending(txn, it); err != nil {
					return err
				}
			}
			fresh = append(fresh, items...)
			res.New += len(items)
		}
		return nil
	}()
	if err != nil {
		return ConfirmResult{}, nil, nil, err
	}
	return res, released, fresh, nil
}

// Settle ends the holds due by now, oldest first, at most limit of them:
// deliver(heldAt) says whether a delivery held since heldAt goes out with the
// body it was held with (true) or is dropped (false).
func (q *Queue) Settle(now time.Time, limit int, deliver func(heldAt time.Time) bool) (released, dropped int, err error) {
	ms := now.UnixMilli()
	end := keyHeldAt(ms+1, "")
	q.mu.Lock()
	from := q.heldFrom
	q.mu.Unlock()
	// The hold index is read outside the commit's transaction (an iterator
	// there would sort every write of the round); each hold is checked again
	// inside it, and holds stored meanwhile wait for the next call.
	var (
		ids    []string
		untils []int64
		last   []byte
	)
	err = q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pHeld)})
		defer it.Close()
		start := from
		if start == nil {
			start = []byte(pHeld)
		}
		for it.Seek(start); it.Valid() && len(ids) < limit; it.Next() {
			k := it.Item().Key()
			if bytes.Compare(k, end) >= 0 {
				break
			}
			until, id, ok := splitTimed(k, len(pHeld))
			if !ok {
				continue
			}
			ids, untils = append(ids, id), append(untils, until)
			last = it.Item().KeyCopy(nil)
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("settle holds: %w", err)
	}
	if len(ids) == 0 {
		return 0, 0, nil
	}
	var ready []confirmed
	err = q.commits.wait(func(txn *badger.Txn) error {
		released, dropped, ready = 0, 0, ready[:0]
		for i, id := range ids {
			if err := txn.Delete(keyHeldAt(untils[i], id)); err != nil {
				return err
			}
			rec, err := getRecord(txn, id)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if rec.State != StateHeld {
				continue
			}
			if err := txn.Delete(keyHeldByKey(rec.Key, id)); err != nil {
				return err
			}
			if !deliver(time.UnixMilli(rec.Created)) {
				if err := deleteHeld(txn, id, rec); err != nil {
					return err
				}
				dropped++
				continue
			}
			rec.State, rec.Due = webhook.StateReady, ms
			if err := putRecord(txn, id, rec); err != nil {
				return err
			}
			if err := txn.Set(keyReady(rec.Hook, ms, id), nil); err != nil {
				return err
			}
			ready = append(ready, confirmed{id, rec})
			released++
		}
		return nil
	}, func() {
		q.held.Add(-int64(released + dropped))
		q.readyKeys.Add(int64(released))
		refs := map[string][]readyRef{}
		for _, c := range ready {
			refs[c.rec.Hook] = append(refs[c.rec.Hook], readyRef{c.rec.Due, c.id})
		}
		q.mu.Lock()
		if last != nil && bytes.Equal(q.heldFrom, from) {
			// Every hold index key before last is gone: the next call
			// seeks past them rather than over their deletion markers.
			q.heldFrom = append(last, 0)
		}
		q.mu.Unlock()
		q.notify(refs)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("settle holds: %w", err)
	}
	return released, dropped, nil
}

// deleteHeld removes a held delivery's record, body and hook index entry.
func deleteHeld(txn *badger.Txn, id string, rec record) error {
	for _, k := range [][]byte{keyRecord(id), keyBody(id), keyHook(rec.Hook, id)} {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// heldIDs lists the held deliveries of the hashed event key h.
func heldIDs(txn *badger.Txn, h string) ([]string, error) {
	prefix := heldByKeyPrefix(h)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var ids []string
	for it.Rewind(); it.Valid(); it.Next() {
		ids = append(ids, string(it.Item().Key()[len(prefix):]))
	}
	return ids, nil
}

// eventKeyState reads q/e/<h>; an unknown (or expired) key has mode 0.
func eventKeyState(txn *badger.Txn, h string) (keyState, error) {
	item, err := txn.Get(keyEvent(h))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return keyState{}, nil
	}
	if err != nil {
		return keyState{}, err
	}
	var st keyState
	err = item.Value(func(v []byte) error {
		switch {
		case len(v) == 1 && (v[0] == keyHeld || v[0] == keyConfirmed):
			st.mode = v[0]
		case len(v) == 5 && v[0] == keyCredits:
			st = keyState{mode: keyCredits, credits: binary.BigEndian.Uint32(v[1:])}
		}
		return nil
	})
	return st, err
}

// putPending writes a new ready delivery.
func putPending(txn *badger.Txn, it pending) error {
	if err := putRecord(txn, it.id, it.rec); err != nil {
		return err
	}
	for _, e := range [][2][]byte{
		{keyBody(it.id), it.body},
		{keyHook(it.rec.Hook, it.id), nil},
		{keyReady(it.rec.Hook, it.rec.Due, it.id), nil},
	} {
		if err := txn.Set(e[0], e[1]); err != nil {
			return err
		}
	}
	return nil
}
