package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Timing of Lead.
const (
	// leadRetry is how often a sidecar that is not the leader asks for the
	// lock again, and how long a leader waits before asking again after
	// losing it.
	leadRetry = time.Second
	// leadCheck is how often the leader checks that its lock's connection
	// (and so the lock) is still alive; leadCheckTimeout bounds that check.
	leadCheck        = time.Second
	leadCheckTimeout = 2 * time.Second
	// handover is how long a new leader waits, holding the lock, before it
	// runs: by then the leader before it (whose connection the server ended)
	// has failed a check and been told to stop.
	handover = leadCheck + leadCheckTimeout
)

// Lead runs run while this process holds the store's lock called name, and
// waits for the lock otherwise, until ctx ends: of all the processes calling
// Lead with the same name on one schema, at most one runs run at a time, and
// when it stops (it exits, it is killed, its connection to the server is
// lost) another takes over within about leadRetry.
//
// The lock is a session advisory lock on a connection of its own, checked
// every leadCheck: run's context is cancelled as soon as a check fails (or
// takes longer than leadCheckTimeout), and run must return then. A process
// killed outright loses the lock when the server sees its connection close.
// A new leader waits handover before it runs, so that a leader that lost its
// connection without dying has been told to stop: a failover takes a few
// seconds, and two runs never overlap unless a run ignores its context. run returning while ctx is still live
// (an error, logged) gives the lock up; Lead asks for it again after
// leadRetry. Lead returns nil once ctx ended and run returned.
func (db *DB) Lead(ctx context.Context, name string, run func(ctx context.Context) error) error {
	key := "oceanhooks.lead." + db.schema + "." + name
	for ctx.Err() == nil {
		led, err := db.leadOnce(ctx, name, key, run)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			db.log.Warn("postgres: leading "+name, "server", db.Server(), "led", led, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(leadRetry):
		}
	}
	return nil
}

// Leading reports whether this process runs the named Lead now.
func (db *DB) Leading(name string) bool {
	v, ok := db.leading.Load(name)
	return ok && v.(bool)
}

// leadOnce takes the lock if it is free and runs run while it holds it. led
// tells whether it held the lock.
func (db *DB) leadOnce(ctx context.Context, name, key string, run func(context.Context) error) (led bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, db.cfg.ConnConfig)
	if err != nil {
		return false, fmt.Errorf("connect: %w", redact(err, db.cfg))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1))", key).Scan(&got); err != nil {
		return false, fmt.Errorf("take the lock: %w", redact(err, db.cfg))
	}
	if !got {
		return false, nil
	}
	select {
	case <-ctx.Done():
		return true, nil
	case <-time.After(handover):
	}
	if err := db.check(ctx, conn); err != nil {
		return true, err
	}
	db.leading.Store(name, true)
	defer db.leading.Store(name, false)
	db.log.Info("postgres: leading "+name, "server", db.Server())

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- run(runCtx) }()
	tick := time.NewTicker(leadCheck)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if ctx.Err() == nil {
				// Give the lock up for whoever asks next.
				_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock(hashtext($1))", key)
				if err == nil {
					err = errors.New("stopped on its own")
				}
			}
			return true, err
		case <-tick.C:
			if err := db.check(ctx, conn); err != nil && ctx.Err() == nil {
				cancel(err)
				<-done
				return true, err
			}
		}
	}
}

// check tells whether the lock's connection answers within leadCheckTimeout.
func (db *DB) check(ctx context.Context, conn *pgx.Conn) error {
	cctx, cancel := context.WithTimeout(ctx, leadCheckTimeout)
	defer cancel()
	if _, err := conn.Exec(cctx, "SELECT 1"); err != nil {
		return fmt.Errorf("lost the lock's connection: %w", redact(err, db.cfg))
	}
	return nil
}
