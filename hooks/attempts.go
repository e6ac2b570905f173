package hooks

import (
	"fmt"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// RecordAttempts sets latestSentAt/latestStatus of many hooks in one
// transaction (one commit: on Badger one sync on a database opened with
// SyncWrites; on PostgreSQL a commit that does not wait for its WAL flush),
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
	stamps := make(map[string]stamp, len(latest))
	for id, a := range latest {
		since, n := s.failing.of(id)
		stamps[id] = stamp{at: a.At.UTC(), status: a.Status, withRun: true, failingSince: since, failures: n}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.be.stamp(stamps); err != nil {
		return fmt.Errorf("hooks: record attempts: %w", err)
	}
	return nil
}
