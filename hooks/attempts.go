package hooks

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// RecordAttempts sets latestSentAt/latestStatus of many hooks, at most
// stampChunk hooks per transaction (one commit each: on Badger one sync on a
// database opened with SyncWrites; on PostgreSQL a commit that does not wait
// for its WAL flush), each serialised with the store's other writes like
// RecordAttempt: the queue hands its attempts over in batches this way, so a
// burst of deliveries costs one write per batch rather than one per attempt.
// The chunks keep any batch within what one transaction may hold, and let
// the writes queued behind it (the proxy's enqueues share Badger's one
// writer) in between, instead of after the whole batch. It also stores each
// of these hooks' run of failed attempts as Attempted counted it, so that
// auto-disable's clock survives a restart; on PostgreSQL a 2xx also ends
// the runs of every Store that began at or before it, and a run that a
// success through another Store ended is forgotten here rather than stored
// (see autodisable.go). Deleted hooks are left alone. On an error the
// chunks before the failed one are written and the rest are not; the
// caller may hand the whole batch again (recording an attempt twice sets
// the same values).
func (s *Store) RecordAttempts(latest map[string]webhook.LatestAttempt) error {
	ids := make([]string, 0, len(latest))
	for id := range latest {
		ids = append(ids, id)
	}
	for chunk := range slices.Chunk(ids, stampChunk) {
		if err := s.recordChunk(chunk, latest); err != nil {
			return err
		}
		runtime.Gosched()
	}
	return nil
}

// stampChunk is the most hooks RecordAttempts writes in one transaction:
// a few hundred kilobytes at most, well within the largest transaction of
// the smallest memory budget, and a few milliseconds of the store's writer.
const stampChunk = 128

func (s *Store) recordChunk(ids []string, latest map[string]webhook.LatestAttempt) error {
	stamps := make(map[string]stamp, len(ids))
	for _, id := range ids {
		a := latest[id]
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
