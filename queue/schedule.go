package queue

import (
	"bytes"
	"container/heap"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The scheduler's memory: per hook with work, a small window of its ready
// index read ahead from disk (buf) and where the next read starts (from);
// the hooks that have a due delivery and a free slot in a heap by due time;
// and the leases of the deliveries being attempted. Nothing here grows with
// the backlog: a hook holds at most readAhead refs, and there are at most
// Workers leases plus the outcomes not yet committed.
//
// Invariant: every ready key of a hook that sorts before from is in buf, is
// leased, or no longer exists. A ready key written later that sorts before
// from (a lease returned, a redelivery in the same millisecond as a read) is
// put in buf by notify; one at or after from is found by the next read.

// readAhead is how many due ready keys one read of a hook's index takes,
// while all hooks together hold fewer than maxReadAhead; beyond that a read
// takes only what the hook has slots for, so that many hooks with a backlog
// cost memory by the worker, not by the hook.
const (
	readAhead    = 64
	maxReadAhead = 1 << 16
)

// readyRef is one ready key: its due time and delivery id.
type readyRef struct {
	due int64
	id  string
}

func (r readyRef) key(hook string) []byte { return keyReady(hook, r.due, r.id) }

func (r readyRef) less(o readyRef) bool {
	return r.due < o.due || (r.due == o.due && r.id < o.id)
}

// hookState is the scheduler's view of one hook.
type hookState struct {
	hook     string
	inflight int        // attempts running
	buf      []readyRef // read ahead, sorted, none leased when read
	from     []byte     // the next read starts here (nil: at the index's start)
	diskNext int64      // due of the first key at or after from (noDue: none known)
	caughtUp bool       // no key at or after from was on disk at the last read: new keys go straight to buf
	reading  bool       // a read is under way (outside q.mu)
	missed   []readyRef // notified during that read, applied after it
	pos      int        // index in the due heap, -1 when not in it
}

// next is the earliest due time the hook may have work at.
func (st *hookState) next() int64 {
	n := st.diskNext
	if len(st.buf) > 0 {
		n = min(n, st.buf[0].due)
	}
	return n
}

// insert puts r in buf in order (once) and keeps buf within readAhead: what
// falls off the end is read again from disk later. It returns how much buf
// grew.
func (st *hookState) insert(r readyRef) int {
	i := 0
	for i < len(st.buf) && st.buf[i].less(r) {
		i++
	}
	if i < len(st.buf) && st.buf[i] == r {
		return 0
	}
	st.buf = append(st.buf, readyRef{})
	copy(st.buf[i+1:], st.buf[i:])
	st.buf[i] = r
	if len(st.buf) > readAhead {
		last := st.buf[len(st.buf)-1]
		st.buf = st.buf[:len(st.buf)-1]
		st.from = last.key(st.hook)
		st.diskNext = min(st.diskNext, last.due)
		st.caughtUp = false
		return 0
	}
	return 1
}

// dueHeap orders hooks with work and a free slot by their next due time.
type dueHeap []*hookState

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].next() < h[j].next() }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *dueHeap) Push(x any) {
	st := x.(*hookState)
	st.pos = len(*h)
	*h = append(*h, st)
}
func (h *dueHeap) Pop() any {
	old := *h
	st := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	st.pos = -1
	return st
}

// resumePoint is where the next read of an idle hook's ready index starts:
// kept when its state is dropped, so that the hook's next delivery does not
// scan the deletion markers of every key it ever had (memory grows with the
// hooks that had work, not with their backlog).
type resumePoint struct {
	from     []byte
	caughtUp bool
}

// stateLocked is hook's state, made when missing.
func (q *Queue) stateLocked(hook string) *hookState {
	st := q.sched[hook]
	if st == nil {
		st = &hookState{hook: hook, diskNext: noDue, pos: -1}
		if r, ok := q.resume[hook]; ok {
			st.from, st.caughtUp = r.from, r.caughtUp
			delete(q.resume, hook)
		}
		q.sched[hook] = st
	}
	return st
}

// forgetLocked drops what is kept of a hook whose deliveries are all gone.
func (q *Queue) forgetLocked(hook string) { delete(q.resume, hook) }

// placeLocked puts st where it belongs: in the heap when it has work and a
// free slot, out of it otherwise; a hook with nothing at all is forgotten.
func (q *Queue) placeLocked(st *hookState) {
	want := st.next() != noDue && st.inflight < q.opts.PerHookConcurrency
	switch {
	case want && st.pos < 0:
		heap.Push(&q.due, st)
	case want:
		heap.Fix(&q.due, st.pos)
	case st.pos >= 0:
		heap.Remove(&q.due, st.pos)
	}
	if st.next() == noDue && st.inflight == 0 && !st.reading && q.leasesOf[st.hook] == 0 {
		delete(q.sched, st.hook)
		if st.from != nil {
			q.resume[st.hook] = resumePoint{from: st.from, caughtUp: st.caughtUp}
		}
	}
}

// notifyLocked records that hook has a ready key (due, id).
func (q *Queue) notifyLocked(hook string, due int64, id string) {
	st := q.stateLocked(hook)
	r := readyRef{due, id}
	if st.reading {
		st.missed = append(st.missed, r)
	}
	k := r.key(hook)
	switch {
	case st.from != nil && bytes.Compare(k, st.from) < 0:
		if _, leased := q.leases[id]; !leased {
			q.buffered += st.insert(r)
		}
	case st.caughtUp && !st.reading:
		// Nothing on disk at or after from but what is notified: take
		// the key as it comes, without reading it back.
		st.from = append(k, 0)
		q.buffered += st.insert(r)
	default:
		st.diskNext = min(st.diskNext, due)
	}
	q.placeLocked(st)
}

// notify is notifyLocked under q.mu, then wakes the dispatcher.
func (q *Queue) notify(refs map[string][]readyRef) {
	if len(refs) == 0 {
		return
	}
	q.mu.Lock()
	for hook, rs := range refs {
		for _, r := range rs {
			q.notifyLocked(hook, r.due, r.id)
		}
	}
	q.mu.Unlock()
	q.poke()
}

// readReady reads up to n keys of hook's ready index from from on, due by
// now. next is the due of the first key left (noDue: none), after the key
// to start the next read at.
func (q *Queue) readReady(hook string, from []byte, now int64, n int) (refs []readyRef, next int64, after []byte, err error) {
	q.reads.Add(1)
	prefix := readyPrefix(hook)
	next, after = noDue, from
	err = q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		start := from
		if start == nil {
			start = prefix
		}
		var last []byte
		for it.Seek(start); it.Valid(); it.Next() {
			k := it.Item().Key()
			_, due, id, ok := parseReady(k)
			if !ok {
				continue
			}
			if due > now || len(refs) == n {
				next, after = due, it.Item().KeyCopy(nil)
				return nil
			}
			refs = append(refs, readyRef{due, id})
			last = k
		}
		if last != nil {
			after = append(bytes.Clone(last), 0) // the index ended: next read starts past it
		}
		return nil
	})
	return refs, next, after, err
}

// lease is a delivery being attempted: it stays in memory only (a crash or
// a restart makes it ready again, since its ready key stays on disk until
// its outcome is committed) and ends when that outcome is committed, when
// the attempt is cut short by shutdown, or when it outlives leaseFor.
type lease struct {
	id, hook string
	due      int64     // its ready key's due time
	until    time.Time // wall clock: returned to ready after this
	rec      record    // read when the attempt began
	gone     bool      // its delivery was removed meanwhile (not counted as leased any more)
}

func (l *lease) ref() readyRef { return readyRef{l.due, l.id} }

// leaseFor is how long a lease may last: an attempt (quick retries
// included) plus the shutdown grace that lets its outcome be recorded.
func (q *Queue) leaseFor() time.Duration { return q.opts.AttemptTimeout + q.opts.ShutdownGrace }

// holdsLocked reports whether l is still the lease of its delivery.
func (q *Queue) holdsLocked(l *lease) bool { return q.leases[l.id] == l && !l.gone }

// dropLeaseLocked ends l and counts it; back says whether its ready key
// goes back to the scheduler (it still exists and is due again).
func (q *Queue) dropLeaseLocked(l *lease, back bool) {
	if q.leases[l.id] != l {
		return
	}
	delete(q.leases, l.id)
	if q.leasesOf[l.hook]--; q.leasesOf[l.hook] <= 0 {
		delete(q.leasesOf, l.hook)
	}
	if !l.gone {
		q.leased.Add(-1)
	}
	st := q.stateLocked(l.hook)
	if back && !l.gone {
		q.notifyLocked(l.hook, l.due, l.id)
	}
	q.placeLocked(st)
}

// returnLease makes l's delivery ready again without a write (its ready
// key never left the disk).
func (q *Queue) returnLease(l *lease) {
	q.mu.Lock()
	q.dropLeaseLocked(l, true)
	q.mu.Unlock()
	q.poke()
}

// expireLeases returns to ready the leases older than leaseFor: an attempt
// cannot run that long, so its outcome is lost or stuck (a disk that does
// not take it); the delivery is tried again.
func (q *Queue) expireLeases(now time.Time) int {
	q.mu.Lock()
	var old []*lease
	for _, l := range q.leases {
		if now.After(l.until) {
			old = append(old, l)
		}
	}
	for _, l := range old {
		q.dropLeaseLocked(l, true)
	}
	q.mu.Unlock()
	if len(old) > 0 {
		q.opts.Logger.Warn("leases outlived the attempt timeout; their deliveries are ready again", "count", len(old))
		q.poke()
	}
	return len(old)
}

// isLeased reports whether delivery id is being attempted.
func (q *Queue) isLeased(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	l, ok := q.leases[id]
	return ok && !l.gone
}
