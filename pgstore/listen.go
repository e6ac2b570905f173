package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Backoff between attempts to (re)establish Listen's connection.
const (
	listenRetryMin = 100 * time.Millisecond
	listenRetryMax = 5 * time.Second
	// listenCheck is how long Listen's connection may stay quiet before
	// Listen checks that it still answers a query.
	listenCheck = 5 * time.Second
)

// Listen listens on channels (names from Channel) on a connection of its own
// until ctx ends, and returns nil then. After every (re)connect, once LISTEN
// is in place and before any notification is handed on, it calls onConnect:
// notifications sent while it was disconnected are lost, and onConnect is
// where the caller reloads what they would have told. onNotify gets every
// notification, one at a time, in order. A lost connection, one that stays
// quiet for listenCheck and then does not answer a query, or a failed
// onConnect is logged and retried with backoff; Connected tells whether it
// is listening now.
func (db *DB) Listen(ctx context.Context, channels []string, onConnect func(ctx context.Context) error, onNotify func(channel, payload string)) error {
	db.listeners.Add(1)
	defer db.listeners.Add(-1)
	wait := listenRetryMin
	for {
		err := db.listenOnce(ctx, channels, onConnect, onNotify, func() { wait = listenRetryMin })
		if ctx.Err() != nil {
			return nil
		}
		db.log.Warn("postgres: listening for changes failed; retrying", "server", db.Server(), "retry_in", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, listenRetryMax)
	}
}

func (db *DB) listenOnce(ctx context.Context, channels []string, onConnect func(context.Context) error, onNotify func(string, string), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, db.cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("connect: %w", redact(err, db.cfg))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	if onConnect != nil {
		if err := onConnect(ctx); err != nil {
			return fmt.Errorf("reload after connecting: %w", err)
		}
	}
	db.listening.Add(1)
	defer db.listening.Add(-1)
	connected()
	for {
		wctx, cancel := context.WithTimeout(ctx, listenCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// Quiet for listenCheck: a connection whose peer vanished
			// without closing it would stay quiet for ever.
			cctx, cancel := context.WithTimeout(ctx, leadCheckTimeout)
			_, err := conn.Exec(cctx, "SELECT 1")
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("the connection stopped answering: %w", redact(err, db.cfg))
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for notifications: %w", redact(err, db.cfg))
		}
		onNotify(n.Channel, n.Payload)
	}
}

// Connected reports whether every running Listen is connected and
// listening now: false before the first Listen was called, while any of them
// reconnects, and after they all returned.
func (db *DB) Connected() bool {
	n := db.listeners.Load()
	return n > 0 && db.listening.Load() == n
}
