package hooks

import (
	"fmt"
	"time"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// RecordAttempts sets latestSentAt/latestStatus of many hooks in one
// transaction (one commit: on Badger one sync on a database opened with
// SyncWrites; on PostgreSQL a commit that does not wait for its WAL flush),
// serialised with the store's other writes like RecordAttempt: the queue
// hands its attempts over in batches this way, so a burst of deliveries
// costs one write per batch rather than one per attempt. It also stores each
// of these hooks' run of failed attempts as Attempted counted it, so that
// auto-disable's clock survives a restart; on PostgreSQL a 2xx also ends
// the runs of every Store that began at or before it, and a run that a
// success through another Store ended is forgotten here rather than stored
// (see autodisable.go). Deleted hooks are left alone. On an error nothing
// was written, and the caller may hand the batch again.
func (s *Store) RecordAttempts(latest map[string]webhook.LatestAttempt) error {
	if len(latest) == 0 {
		return nil
	}
	stamps := make(map[string]stamp, len(latest))
	for id, a := range latest {
		since, n := s.failing.of(id)
		stamps[id] = stamp{at: a.At.UTC(), status: a.Status, succeeded: isSuccess(a.Status),
			withRun: true, failingSince: since, failures: n}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	ended, err := s.be.stamp(stamps)
	if err != nil {
		return fmt.Errorf("hooks: record attempts: %w", err)
	}
	for id, success := range ended {
		var failed time.Time
		if a := latest[id]; !isSuccess(a.Status) {
			failed = a.At.UTC()
		}
		s.failing.endBy(id, success, failed)
	}
	return nil
}
