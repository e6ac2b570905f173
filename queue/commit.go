package queue

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Every write of the queue goes through one committer. A caller hands it an
// op (a function that applies the caller's writes to a transaction) and the
// committer applies every op waiting at that moment, in the order they came,
// to one Badger transaction and commits it. Open requires a database opened
// with SyncWrites, so that commit is synced before Commit returns: one sync
// covers every op of the round, and an op's done runs only after the sync
// that covers it. Leader/follower: a submit that finds no round in flight
// starts one (in a goroutine of its own, so that a caller can stop waiting
// while the disk hangs and the round still completes); ops that arrive while
// a round is in flight go in the next.
//
// Ops come in two kinds. An urgent op has a caller waiting (an enqueue, a
// hold, a redelivery): it starts a round at once. A bookkeeping op (the
// outcome of an attempt) has nobody waiting: it rides along with the next
// urgent round, or, when none comes, waits until bookDelay has passed or
// maxBooks have gathered. Bookkeeping thus costs a share of a sync, not a
// sync of its own, and its loss in a crash is covered by at-least-once
// delivery (see the package doc).
//
// An op's apply may run more than once (on a conflict, or again without an
// op of the same round that failed), always on a fresh transaction, so it
// must only write through txn and keep its results in variables it resets
// first. done runs once, on the committer's goroutine, in op order.
type committer struct {
	db     *badger.DB
	delay  time.Duration // bookDelay; tests lengthen it
	before func()        // test seam: runs before each round (a stalled disk)

	mu      sync.Mutex
	pending []*op
	urgent  int  // urgent ops in pending
	leading bool // a round is in flight or about to start
	flush   bool // the bookkeeping delay passed: the next round takes bookkeeping too
	timer   *time.Timer
	armed   bool

	rounds atomic.Int64 // commits made, for tests and benchmarks
}

// op is one caller's writes.
type op struct {
	apply func(txn *badger.Txn) error
	// solo writes the op by itself when it does not fit in one transaction
	// (ErrTxnTooBig alone); nil: that error is the op's.
	solo   func() error
	done   func(err error)
	urgent bool

	reported bool // done has run (the committer's goroutine only)
}

const (
	// bookDelay is the longest a bookkeeping op waits for a round.
	bookDelay = 20 * time.Millisecond
	// maxBooks bookkeeping ops start a round without waiting.
	maxBooks = 512
	// maxRound is the most ops one round takes; the rest go in the next.
	maxRound = 4096
)

func newCommitter(db *badger.DB) *committer { return &committer{db: db, delay: bookDelay} }

// submit hands o to the committer.
func (c *committer) submit(o *op) {
	c.mu.Lock()
	c.pending = append(c.pending, o)
	if o.urgent {
		c.urgent++
	}
	start := !c.leading && c.dueLocked()
	if start {
		c.leading = true
	} else if !c.leading {
		c.armLocked()
	}
	c.mu.Unlock()
	if start {
		go c.lead()
	}
}

// wait submits an urgent op and waits for its done.
func (c *committer) wait(apply func(txn *badger.Txn) error, after func()) error {
	ch := make(chan error, 1)
	c.submit(&op{apply: apply, urgent: true, done: func(err error) {
		if err == nil && after != nil {
			after()
		}
		ch <- err
	}})
	return <-ch
}

// sync commits everything submitted before it, bookkeeping included, and
// returns once that is on disk.
func (c *committer) sync() error {
	return c.wait(func(*badger.Txn) error { return nil }, nil)
}

// dueLocked reports whether a round should start now.
func (c *committer) dueLocked() bool {
	books := len(c.pending) - c.urgent
	return c.urgent > 0 || books >= maxBooks || (c.flush && books > 0)
}

// armLocked makes sure a round starts within bookDelay for waiting
// bookkeeping.
func (c *committer) armLocked() {
	if c.armed || len(c.pending) == 0 {
		return
	}
	c.armed = true
	if c.timer == nil {
		c.timer = time.AfterFunc(c.delay, c.kick)
		return
	}
	c.timer.Reset(c.delay)
}

// kick starts a round for bookkeeping that waited bookDelay.
func (c *committer) kick() {
	c.mu.Lock()
	c.armed = false
	c.flush = true
	start := !c.leading && c.dueLocked()
	if start {
		c.leading = true
	}
	c.mu.Unlock()
	if start {
		go c.lead()
	}
}

// lead commits rounds while any is due, then steps down.
func (c *committer) lead() {
	for {
		c.mu.Lock()
		if !c.dueLocked() {
			c.leading = false
			c.armLocked()
			c.mu.Unlock()
			return
		}
		n := min(len(c.pending), maxRound)
		round := c.pending[:n:n]
		c.pending = append([]*op(nil), c.pending[n:]...)
		c.urgent = 0
		for _, o := range c.pending {
			if o.urgent {
				c.urgent++
			}
		}
		c.flush = false
		c.mu.Unlock()
		c.commit(round)
	}
}

// commit writes ops in as few transactions as they fit in.
func (c *committer) commit(ops []*op) {
	if c.before != nil {
		c.before()
	}
	for len(ops) > 0 {
		ops = ops[c.commitPrefix(ops):]
	}
}

// commitPrefix applies ops, from the first, to one transaction until one
// does not fit, commits them and reports each one's result. An op whose
// apply fails is reported its error and left out (the transaction is made
// again without it). It returns how many ops it dealt with (at least one);
// ops it reported stay marked, so a later call skips them.
func (c *committer) commitPrefix(ops []*op) int {
	end := len(ops)
	for conflicts := 0; ; {
		txn := c.db.NewTransaction(true)
		failed, ferr := -1, error(nil)
		for i := range end {
			if ops[i].reported {
				continue
			}
			if err := ops[i].apply(txn); err != nil {
				failed, ferr = i, err
				break
			}
		}
		if failed >= 0 {
			txn.Discard()
			if !errors.Is(ferr, badger.ErrTxnTooBig) {
				ops[failed].report(ferr)
				continue
			}
			if anyBefore(ops, failed) {
				end = failed // what came before fits: commit that first
				continue
			}
			// Too big alone.
			if ops[failed].solo != nil {
				ops[failed].report(ops[failed].solo())
			} else {
				ops[failed].report(fmt.Errorf("too large for one transaction: %w", ferr))
			}
			return failed + 1
		}
		if !anyBefore(ops, end) {
			txn.Discard()
			return end
		}
		err := txn.Commit()
		if errors.Is(err, badger.ErrConflict) && conflicts < maxConflicts {
			conflicts++
			continue
		}
		c.rounds.Add(1)
		for i := range end {
			if !ops[i].reported {
				ops[i].report(err)
			}
		}
		return end
	}
}

// report hands o its result, once.
func (o *op) report(err error) {
	o.reported = true
	o.done(err)
}

// anyBefore reports whether an op before i is still unreported.
func anyBefore(ops []*op, i int) bool {
	for _, o := range ops[:i] {
		if !o.reported {
			return true
		}
	}
	return false
}
