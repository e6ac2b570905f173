package queue

import (
	"bytes"
	"errors"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// collectGarbage rewrites value-log files while Badger finds one worth it.
func (q *Queue) collectGarbage() {
	q.gcRuns.Add(1)
	for {
		err := q.db.RunValueLogGC(0.5)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			q.opts.Logger.Error("value-log GC", "err", err)
		}
		return
	}
}

// sweep removes delivered records and dead letters whose time is up, and
// returns how many.
//
// Every key a batch reads is removed, so each scan of the expiry index
// starts past the last key the previous batch removed (q.sweptTo, kept for
// the next sweep too): the deletion markers of what was removed are not
// walked again before compaction drops them. An expiry written later lies
// past that start: it is at least its attempt's end plus the shorter of
// Retention and DeadLetterTTL, and an attempt whose outcome is written
// after a scan ended at most a lease before it. The start is kept below
// that bound, so a sweep asked about a time far ahead skips nothing.
func (q *Queue) sweep(now time.Time) (int, error) {
	end := keyExpiry(now.UnixMilli()+1, "")
	removed := 0
	for {
		q.mu.Lock()
		from := q.sweptTo
		q.mu.Unlock()
		if from == nil {
			from = []byte(pExpiry)
		}
		floor := keyExpiry(q.opts.Now().Add(min(q.opts.Retention, q.opts.DeadLetterTTL)-q.leaseFor()-time.Minute).UnixMilli(), "")
		var keys [][]byte
		err := q.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pExpiry)})
			defer it.Close()
			for it.Seek(from); it.Valid() && len(keys) < 256; it.Next() {
				k := it.Item().KeyCopy(nil)
				if bytes.Compare(k, end) >= 0 {
					break
				}
				keys = append(keys, k)
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return removed, err
		}
		var dead, gone int
		var deadOf map[string]int
		err = q.commits.wait(func(txn *badger.Txn) error {
			dead, gone, deadOf = 0, 0, map[string]int{}
			for _, k := range keys {
				at, id, ok := splitTimed(k, len(pExpiry))
				rec, err := getRecord(txn, id)
				if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
				if !ok || err != nil || rec.Expires != at ||
					(rec.State != webhook.StateDead && rec.State != webhook.StateDelivered) {
					// A stale index entry (none are expected): drop only it.
					if err := txn.Delete(k); err != nil {
						return err
					}
					continue
				}
				if rec.State == webhook.StateDead {
					dead++
					deadOf[rec.Hook]++
				}
				gone++
				if err := deleteDelivery(txn, id, rec); err != nil {
					return err
				}
			}
			return nil
		}, func() {
			q.dead.Add(-int64(dead))
			for hook, n := range deadOf {
				q.deadOf.add(hook, -n)
			}
			next := append(bytes.Clone(keys[len(keys)-1]), 0)
			if bytes.Compare(next, floor) > 0 {
				next = floor
			}
			q.mu.Lock()
			if bytes.Compare(next, q.sweptTo) > 0 {
				q.sweptTo = next
			}
			q.mu.Unlock()
		})
		if err != nil {
			return removed, err
		}
		removed += gone
	}
}
