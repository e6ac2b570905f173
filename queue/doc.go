// Package queue keeps webhook deliveries on disk until a receiver accepts
// them: it stores one delivery per subscribed hook per event, delivers them
// with signatures and an SSRF guard, retries with backoff, keeps an attempt log
// and dead letters, and lets users and operators list and redeliver.
//
// # Storage
//
// The queue shares the server's Badger database; every key it writes starts
// with "q/". Delivery ids are Ocean-style (aidx: 8 base-36 digits of
// milliseconds since 2000-01-01, 4 of node, 4 of counter), so they sort by
// creation time.
//
//	q/d/<id>                    delivery record (JSON: hook, owner, eventId, type, state, attempts, due, expiry)
//	q/b/<id>                    the envelope, built once at enqueue and sent verbatim on every attempt
//	q/h/<hookID>/<id>           per-hook index of every delivery (listing, cancel, redeliver all)
//	q/r/<hookID>/<due:8><id>    ready index, ordered by due time (big-endian unix ms) within a hook
//	q/l/<id>                    lease of an in-flight delivery (value: 8-byte lease expiry, then the hook id)
//	q/x/<expiry:8><id>          expiry index of delivered and dead records (value: 'd' delivered, 'x' dead)
//	q/a/<id>/<n:4>              attempt log entry n (JSON webhook.Attempt), the last 10 kept
//	q/j/<hookID>                a redeliver-all job in progress (JSON: the newest id it covers, the last id done)
//
// The ready index is grouped by hook so that a saturated or hanging hook never
// has to be scanned past: the scheduler keeps, in memory, only the earliest
// due time of each hook that has ready work (memory grows with the number of
// hooks, never with the backlog) and claims from the hooks that are due and
// below their concurrency limit, earliest first. A claim moves ready → leased
// in one transaction (retried on conflict). A delivery leaves the lease only in
// the transaction that records its attempt's outcome (and that transaction
// writes nothing if the hook's deliveries were cancelled meanwhile), so a
// crash at any point leaves it ready or leased, and Open returns every lease
// to ready whatever its expiry: only one process holds the Badger directory,
// so no lease can belong to a live worker. Delivery is therefore at least
// once.
//
// # Delivery
//
// Each attempt reads the hook's current URL and secret (an edit applies to the
// next attempt; a deleted hook's delivery is dropped; a deactivated hook still
// gets what was queued before, as Ocean's queued jobs do) and POSTs the stored
// envelope with Ocean's headers under the configured prefix and, for a
// non-empty secret, the Standard Webhooks signature. Connections go through an
// SSRF guard that checks every address actually dialled. Outcomes and backoff
// follow [Options]: only 2xx succeeds, 4xx but 408/429 is final, 410 also
// deactivates the hook, the rest is retried. Every attempt, test sends
// included, is reported to Hooks.RecordAttempt.
//
// # Durability and group commit
//
// Enqueue writes all deliveries of one call in one transaction and returns
// only after they are synced to disk. Open the database with [BadgerOptions]
// (SyncWrites=true): every commit, the hook store's too, is then on disk when
// Commit returns. Badger's single writer takes, in one round, the commits
// that queued while the previous round was being written, and syncs the
// value log once per round; but it syncs the memtable's write-ahead log after
// each commit of the round, so every commit still pays a sync of its own and
// concurrent committers wait in line for each other rather than share one.
// Claims, outcomes, attempt logs and RecordAttempt are commits too, so each
// of them is a synced write in this mode.
//
// A database opened with SyncWrites=false is supported as well: the queue then
// group-commits its enqueues itself (a caller that needs a sync starts one
// db.Sync, or waits for the next one, which covers every caller that arrived
// meanwhile), and claims, outcomes and the attempt log, which at-least-once
// delivery does not need on disk at once, cost no sync. BENCHMARKS.md has the
// measured difference. Group commit is not the default: db.Sync syncs only
// the current memtable's log, so an enqueue whose memtable was rotated out
// just before the sync stays unsynced until that memtable is flushed, and a
// power failure in that window would lose an event the client was told
// about.
package queue
