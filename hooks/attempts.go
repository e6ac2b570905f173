package hooks

import (
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// RecordAttempts sets latestSentAt/latestStatus of many hooks in one
// transaction (one commit, one sync on a database opened with SyncWrites),
// serialised with the store's other writes like RecordAttempt: the queue
// hands its attempts over in batches this way, so a burst of deliveries
// costs one write per batch rather than one per attempt. It also stores each
// of these hooks' run of failed attempts as Attempted counted it, so that
// auto-disable's clock survives a restart. Deleted hooks are left alone.
// On an error nothing was written, and the caller may hand the batch again.
func (s *Store) RecordAttempts(latest map[string]webhook.LatestAttempt) error {
	if len(latest) == 0 {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.update(func(txn *badger.Txn) error {
		for id, a := range latest {
			h, err := get(txn, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			at, status := a.At.UTC(), a.Status
			h.LatestSentAt, h.LatestStatus = &at, &status
			h.FailingSince, h.Failures = s.failing.of(id)
			if err := put(txn, h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hooks: record attempts: %w", err)
	}
	return nil
}
