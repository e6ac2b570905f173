// Package hooks keeps users' webhook configurations: it stores them in
// Badger or PostgreSQL, holds an in-memory index of the active ones for the
// hot path, answers Ocean's /api/i/webhooks/* management API (taking over
// the hooks a user already has in Ocean at their first call), deactivates
// hooks whose deliveries have all failed for too long (autodisable.go), and
// lists, imports and switches hooks for the admin listener (package admin).
//
// # Two backends
//
// A Store keeps its hooks in a backend (backend.go) and everything else in
// memory, the same for both: ids, the index, the takeover cache, the runs of
// failed attempts, the metrics.
//
//   - Badger (Open, badger.go): one process holds the database. Management
//     writes (create, update, delete, import, takeover) are synced after
//     they commit, so the server may open Badger without synced writes; the
//     queue's batches of latest attempts (RecordAttempts, at most 128 hooks
//     per transaction) rely on the database's own setting, and go to a
//     small key of their own beside each hook's record, which every read
//     lays over the record and every write of the record folds in.
//   - PostgreSQL (OpenPostgres, postgres.go): the tables hooks,
//     hook_imports and hook_takeovers in the store's schema
//     (pgstore/migrations/0001_hooks.sql), which several sidecars share.
//     Every write is one READ COMMITTED transaction. Management writes
//     commit with synchronous_commit on, whatever the server's default, so
//     a write that returned is durable; a batch of latest attempts commits
//     with synchronous_commit off (bookkeeping: a crash of the database
//     server may lose the last batches, which the next attempts set again).
//
// # The index stays current
//
// The hot path (Subscribed, AnySubscribed, ActiveHooks, Target) reads only
// the index. A Store changes it after each of its own writes commits. On
// PostgreSQL each write also sends the hook's id on the schema's "hooks"
// channel (pg_notify in the same transaction, so it is heard only if the
// write committed), and Run, which the server runs beside the Store,
// listens there and reads each notified hook again: a hook created, changed
// or deleted through any sidecar reaches every sidecar's index as soon as
// its notification arrives. Notifications sent while a listener is
// disconnected are lost, so after every (re)connect Run reloads every hook
// before it takes notifications again. A Store's own writes and its reloads
// hold one lock while they read and change the index, so a reload never
// puts back an older state of a hook than the one it holds. On Badger no
// one else writes, and Run only waits for its context.
//
// A hook deleted through another sidecar also leaves this one's runs of
// failed attempts, and one activated there starts its run afresh here.
//
// # Auto-disable across sidecars
//
// Each sidecar counts a hook's run of failed attempts from the attempts its
// own queue makes, and a success through any sidecar ends every run that
// began at or before it. On PostgreSQL the hooks table keeps the start of
// the hook's latest successful attempt (succeeded_at, written by the
// queue's batches of latest attempts). A batch locks its hooks in id order
// and, in the same transaction, never stores a run that began at or before
// that success: its own sidecar forgets such a run (starting the next at the
// batch's failed attempt, when that came after the success), and a success
// that ends a stored run notifies the hook, so that every other sidecar's
// Run reads it again and ends its run too. The deactivation reads the
// stored success in the transaction that would switch the hook off, so a
// run that another sidecar's success ended in the meantime deactivates
// nothing, whether this sidecar heard of that success or not. A batch
// keeps each hook's latest attempt only, so a success followed by a failure
// through the same sidecar within one batch is not stored. Badger, held by
// one process, keeps no success: there a success ends the run when it is
// counted.
// TakenOver remembers only users it found taken over; for any other it
// reads the backend, so a takeover that another sidecar marked is seen at
// the next call.
//
// # The owner's limit
//
// Create counts the owner's hooks and inserts the new one in one
// transaction. On Badger, the only writer, the Store's write lock and the
// transaction's conflict check keep concurrent creates from passing the
// limit. On PostgreSQL the transaction first takes an advisory transaction
// lock on the owner (pg_advisory_xact_lock on the schema and the user id)
// and only then counts: the creates of one owner, through any sidecar, run
// one at a time, and the count (a statement of its own, READ COMMITTED)
// sees every create that held the lock before. The lock was chosen over
// SERIALIZABLE because a second create waits for the first instead of
// failing and starting over, and only the creates of the same owner wait.
// Imports do not count against the limit (a user keeps every hook they had
// in Ocean); an import is stored once per hook of Ocean, the record of it
// (hook_imports, or h/native/ in Badger) written with the hook and kept
// after it is deleted.
package hooks
