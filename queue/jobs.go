package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Background work of the management calls. Removing a deleted hook's
// deliveries (CancelHook) and redelivering every dead letter of a hook
// (Redeliver without an id) touch as many deliveries as the hook has, so the
// call only records the job and returns; Run works through the jobs in one
// goroutine, one batch (one transaction of at most `batch` deliveries) at a
// time, the hooks taking turns, and stops between two batches when it is
// told to stop. Both kinds survive a restart and may be run again:
//
//   - A redeliver-all job is stored (q/j/<hook>: the newest delivery id it
//     covers, so that it ends, and the last id done), and each batch moves
//     that cursor in its own transaction; the next Run resumes it. Requeueing
//     touches only dead letters, so running a batch twice changes nothing.
//   - A removal needs no record: the hook is already gone from the hook
//     store, and when Run starts it removes the deliveries of every hook that
//     has some but no longer exists (Hooks.Target), which finishes a removal
//     cut short by a crash or a shutdown.
type jobs struct {
	mu     sync.Mutex
	byHook map[string]*job
	order  []string      // hooks with a job, in turn
	wake   chan struct{} // a job was added (buffered by one)
}

// job is the pending work of one hook: a removal, which wins over anything
// else, or a redeliver-all.
type job struct {
	kind      jobKind
	redeliver redeliverJob
	gen       int // changes when a new call replaces the job
}

type jobKind int

const (
	jobRedeliver jobKind = iota + 1
	jobCancel
)

// redeliverJob is the stored form of a redeliver-all job (q/j/<hook>).
type redeliverJob struct {
	Upto  string `json:"upto"`  // deliveries with a greater id came after the call
	After string `json:"after"` // the last delivery id done
}

// errJobChanged ends a batch whose job was replaced or removed meanwhile.
var errJobChanged = errors.New("job changed")

// add records a job of hook, replacing a redeliver-all (a new call starts it
// over) but never a removal.
func (j *jobs) add(hook string, kind jobKind, r redeliverJob) {
	j.mu.Lock()
	if j.byHook == nil {
		j.byHook = map[string]*job{}
		j.wake = make(chan struct{}, 1)
	}
	cur := j.byHook[hook]
	switch {
	case cur == nil:
		j.byHook[hook] = &job{kind: kind, redeliver: r}
		j.order = append(j.order, hook)
	case cur.kind != jobCancel:
		cur.kind, cur.redeliver, cur.gen = kind, r, cur.gen+1
	}
	wake := j.wake
	j.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

// next is the hook whose turn it is and a copy of its job; false when there
// is none. The hook goes to the back of the line.
func (j *jobs) next() (string, job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.order) == 0 {
		return "", job{}, false
	}
	hook := j.order[0]
	j.order = append(j.order[1:], hook)
	return hook, *j.byHook[hook], true
}

// advance records the progress of a batch of snapshot: the job is done, or
// its cursor moved. A job replaced meanwhile is left as it is.
func (j *jobs) advance(hook string, snapshot job, done bool, after string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	cur := j.byHook[hook]
	if cur == nil || cur.gen != snapshot.gen || cur.kind != snapshot.kind {
		return
	}
	if !done {
		cur.redeliver.After = after
		return
	}
	delete(j.byHook, hook)
	for i, h := range j.order {
		if h == hook {
			j.order = append(j.order[:i], j.order[i+1:]...)
			break
		}
	}
}

// pending is how many hooks have a job (for tests).
func (j *jobs) pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.byHook)
}

// wakeup is the channel that says a job was added.
func (j *jobs) wakeup() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.wake == nil {
		j.wake = make(chan struct{}, 1)
	}
	return j.wake
}

// startRedeliverAll stores a redeliver-all job of hook covering every
// delivery made before now, and hands it to Run.
func (q *Queue) startRedeliverAll(hook string, now time.Time) error {
	r := redeliverJob{Upto: q.ids.Next(now)}
	enc, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := q.commits.wait(func(txn *badger.Txn) error { return txn.Set(keyJob(hook), enc) }, nil); err != nil {
		return err
	}
	q.jobs.add(hook, jobRedeliver, r)
	return nil
}

// jobWorker does one batch of each kind of job on a store.
type jobWorker interface {
	// cancelBatch removes up to batch deliveries of hook (and its
	// redeliver-all job); done once none is left.
	cancelBatch(hook string) (removed int, done bool, err error)
	// redeliverBatch requeues the dead letters among the next batch of
	// hook's deliveries after r.After (up to r.Upto); errJobChanged when
	// the stored job is not r any more.
	redeliverBatch(hook string, r redeliverJob) (after string, done bool, err error)
	// resumeJobs finds the jobs a restart left.
	resumeJobs(ctx context.Context) error
	inject(op string) error
}

// run does the jobs on w until ctx ends, first finding those a restart
// left: stored redeliver-all jobs, and deliveries of hooks that no longer
// exist.
func (j *jobs) run(ctx context.Context, w jobWorker, log *slog.Logger, poll time.Duration) {
	if err := w.resumeJobs(ctx); err != nil {
		log.Error("find unfinished background jobs", "err", err)
	}
	wake := j.wakeup()
	for {
		for ctx.Err() == nil {
			hook, jb, ok := j.next()
			if !ok {
				break
			}
			if err := j.step(w, log, hook, jb); err != nil {
				log.Error("background job", "hook", hook, "err", err)
				break // tried again after the poll interval
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-time.After(poll):
		}
	}
}

// step runs one batch of hook's job.
func (j *jobs) step(w jobWorker, log *slog.Logger, hook string, jb job) error {
	if err := w.inject("job"); err != nil {
		return err
	}
	switch jb.kind {
	case jobCancel:
		n, done, err := w.cancelBatch(hook)
		if err != nil {
			return err
		}
		if done {
			log.Info("removed the deliveries of a deleted hook", "hook", hook)
		} else {
			log.Debug("removing the deliveries of a deleted hook", "hook", hook, "batch", n)
		}
		j.advance(hook, jb, done, "")
	case jobRedeliver:
		after, done, err := w.redeliverBatch(hook, jb.redeliver)
		if errors.Is(err, errJobChanged) {
			// A newer call or the removal took over: here (the job
			// was replaced meanwhile, and advance leaves it be), or
			// through another sidecar sharing the store, which runs
			// the stored job: this copy is dropped.
			j.advance(hook, jb, true, "")
			return nil
		}
		if err != nil {
			return err
		}
		if done {
			log.Info("redelivered the dead letters of a hook", "hook", hook)
		}
		j.advance(hook, jb, done, after)
	}
	return nil
}

// jobWindow is the part of the next batch of a redeliver-all job that it
// covers: ids (oldest first, the batch read after r.After) up to r.Upto;
// done when the job ends with it; after is the cursor it leaves.
func jobWindow(ids []string, r redeliverJob) (covered []string, after string, done bool) {
	done = len(ids) < batch
	for i, id := range ids {
		if id > r.Upto {
			ids, done = ids[:i], true
			break
		}
	}
	after = r.After
	if len(ids) > 0 {
		after = ids[len(ids)-1]
	}
	return ids, after, done
}

// redeliverBatch requeues the dead letters among the next batch of hook's
// deliveries after r.After (up to r.Upto) and moves the stored cursor in
// the same transaction; the job is removed with its last batch.
func (q *Queue) redeliverBatch(hook string, r redeliverJob) (after string, done bool, err error) {
	ids, err := q.hookIDs(hook, r.After, batch)
	if err != nil {
		return "", false, err
	}
	ids, after, done = jobWindow(ids, r)
	next, err := json.Marshal(redeliverJob{Upto: r.Upto, After: after})
	if err != nil {
		return "", false, err
	}
	want, err := json.Marshal(r)
	if err != nil {
		return "", false, err
	}
	_, err = q.requeue(ids, hook, q.opts.Now().UnixMilli(), false, func(txn *badger.Txn) error {
		item, err := txn.Get(keyJob(hook))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return errJobChanged
		}
		if err != nil {
			return err
		}
		stored, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if !bytes.Equal(stored, want) {
			return errJobChanged
		}
		if done {
			return txn.Delete(keyJob(hook))
		}
		return txn.Set(keyJob(hook), next)
	})
	if err != nil {
		return "", false, err
	}
	return after, done, nil
}

// resumeJobs finds the work a restart left: the stored redeliver-all jobs,
// and the deliveries of hooks that no longer exist (one key seek per hook
// that has deliveries).
func (q *Queue) resumeJobs(ctx context.Context) error {
	type stored struct {
		hook string
		job  redeliverJob
	}
	var found []stored
	var gone []string
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pJob), PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			hook := string(it.Item().Key()[len(pJob):])
			var r redeliverJob
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				it.Close()
				return fmt.Errorf("job of %s: %w", hook, err)
			}
			found = append(found, stored{hook, r})
		}
		it.Close()

		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pHook)})
		defer it.Close()
		for it.Rewind(); it.Valid() && ctx.Err() == nil; {
			rest := it.Item().Key()[len(pHook):]
			i := bytes.IndexByte(rest, '/')
			if i < 0 {
				it.Next()
				continue
			}
			hook := string(rest[:i])
			if _, ok := q.hooks.Target(hook); !ok {
				gone = append(gone, hook)
			}
			// The next hook's keys start after every q/h/<hook>/… key:
			// '0' follows '/', and hook ids hold no '/'.
			it.Seek([]byte(pHook + hook + "0"))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, hook := range gone {
		q.opts.Logger.Info("removing the deliveries of a hook deleted before the restart", "hook", hook)
		q.jobs.add(hook, jobCancel, redeliverJob{})
	}
	for _, s := range found {
		if _, ok := q.hooks.Target(s.hook); !ok {
			q.jobs.add(s.hook, jobCancel, redeliverJob{})
			continue
		}
		q.jobs.add(s.hook, jobRedeliver, s.job)
	}
	return nil
}
