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
//	q/d/<id>                    delivery record (record.go: hook, owner, eventId, type, state, attempts, due, expiry; compact binary)
//	q/b/<id>                    the envelope, built once at enqueue and sent verbatim on every attempt
//	q/h/<hookID>/<id>           per-hook index of every delivery (listing, cancel, redeliver all)
//	q/r/<hookID>/<due:8><id>    ready index, ordered by due time (big-endian unix ms) within a hook
//	q/x/<expiry:8><id>          expiry index of delivered and dead records (value: 'd' delivered, 'x' dead)
//	q/a/<id>/<n:4>              attempt log entry n (JSON webhook.Attempt), the last 10 kept
//	q/j/<hookID>                a redeliver-all job in progress (JSON: the newest id it covers, the last id done)
//	q/w/, q/k/, q/e/            held deliveries (hold.go)
//
// The database is shaped for a queue (BadgerOptionsWithin): envelopes live in
// the value log, so compactions move records and index keys, not payloads;
// memtables, caches and tables are sized from the memory budget; records are
// a few dozen bytes. Nothing in memory grows with the backlog: the scheduler
// keeps, per hook with work, a window of at most readAhead ready keys read
// ahead from disk and where the next read starts (schedule.go), the hooks
// with a due delivery and a free slot in a heap by due time, and the leases
// of the attempts in flight. A read of a hook's ready index seeks past the
// keys it already read, so the deletion markers that delivered keys leave
// behind are never scanned again, and a hook that has caught up takes new
// keys as they are stored, without reading them back.
//
// # Delivery
//
// Each attempt reads the hook's current URL and secret (an edit applies to the
// next attempt; a deleted hook's delivery is dropped; a deactivated hook still
// gets what was queued before, as Ocean's queued jobs do) and POSTs the stored
// envelope with Ocean's headers under the configured prefix and, for a
// non-empty secret, the Standard Webhooks signature. Connections go through an
// SSRF guard that checks every address actually dialled, and stay open across
// a receiver's failures (go-retryablehttp would close every idle connection
// after one). Outcomes and backoff follow [Options]: only 2xx succeeds, 4xx
// but 408/429 is final, 410 also deactivates the hook, the rest is retried.
// The hooks' latestSentAt/latestStatus are handed to the hook store in one
// batch every PollInterval (the latest attempt of each hook).
//
// # Durability
//
// Every write of the queue goes through one committer (commit.go): the
// writes of all callers that arrive while a commit is in flight are applied,
// in order, to the next transaction, committed together. Open requires a
// database opened with SyncWrites, so a commit is on disk when it returns,
// and one sync covers the whole round (group commit). A caller's write is in
// exactly one commit, and the caller gets its answer only after that commit
// returned: Enqueue, Hold, Confirm, Redeliver and Settle return once their
// writes are on disk, whatever the memtable did meanwhile (its log is synced
// within the commit). A caller whose context ends first gets its error at
// once (Enqueue then counts the deliveries in
// oceanhooks_queue_enqueue_abandoned_total); its write stays in the round and
// is delivered if that commit completes.
//
// Delivery bookkeeping has no caller waiting and costs no sync of its own. A
// lease (a delivery being attempted) lives in memory only; the delivery's
// ready key stays on disk until its outcome is committed. An outcome (the
// record's new state, the attempt log entry, the ready key removed or moved,
// the expiry entry) waits in memory for the next round, at most bookDelay or
// until maxBooks have gathered, and is written in one transaction with it.
// A lease ends when its outcome is committed, when shutdown cuts its attempt
// short, or when it outlives AttemptTimeout + ShutdownGrace (its outcome is
// lost or cannot be written); its delivery is then ready again, without a
// write.
//
// What each crash (SIGKILL, power loss) leaves:
//
//   - During an enqueue's commit: every caller that got an answer has all its
//     deliveries stored (ready). A caller that got none finds all of them
//     stored or none: one call's deliveries are in one transaction. (A call
//     too large for one transaction, thousands of deliveries, is written in
//     several and answered after the last; a crash between them leaves part
//     of it stored, its caller unanswered.)
//   - After a receiver accepted a delivery, before the outcome's commit: the
//     delivery is ready again with its former attempt count and log; it is
//     sent again (same eventId: one duplicate) and ends delivered. Never lost,
//     never dead on account of the crash.
//   - After a failed attempt, before its commit: the delivery is ready at its
//     former due time with its former count: the attempt is made again and
//     counted then. A delivery becomes dead only in the commit that records
//     its last failed attempt, so a dead letter never appears without its
//     attempt log and never disappears: one committed stays dead (with its log)
//     until it expires, is redelivered or its hook is removed.
//   - A clean stop (Run returning) commits every outcome recorded before it
//     returns, so dead letters, retries and attempt logs survive a restart.
//
// Open returns nothing to ready: leases were never written (a lease an older
// version stored, q/l/<id>, is turned back into a ready key there). Delivery
// is therefore at least once.
package queue
