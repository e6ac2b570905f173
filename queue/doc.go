// Package queue keeps webhook deliveries on disk until a receiver accepts
// them: it stores one delivery per subscribed hook per event, delivers them
// with signatures and an SSRF guard, retries with backoff, keeps an attempt log
// and dead letters, and lets users and operators list and redeliver.
//
// There are two stores with one method set: Queue on the server's embedded
// Badger database (one process; the sections up to PostgreSQL), and PGQueue
// on PostgreSQL, shared by several sidecars (section PostgreSQL). Everything
// about a delivery that does not depend on where it is stored (envelope,
// headers, signature, one attempt, its outcome and backoff, the attempt log
// entry, the listing's form) is one code path of both (core).
//
// # Storage
//
// The Badger queue shares the server's Badger database; every key it writes starts
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
// keys as they are stored, without reading them back. The expiry sweep and
// Settle likewise start each scan of their index past the keys they removed.
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
//     several, a Hold's or a Confirm's one event per transaction, and
//     answered after the last; a crash between them leaves part of it
//     stored, its caller unanswered.)
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
//
// # PostgreSQL
//
// PGQueue keeps the same contract in three tables of the store's schema
// (pgstore/migrations/0002_queue.sql): queue_deliveries (one row per
// delivery: record, envelope, lease, attempt log as a JSON array of the
// latest 10 entries), queue_event_keys (Hold/Confirm) and queue_jobs
// (redeliver-all jobs in progress). It is plain SQL with SELECT … FOR
// UPDATE SKIP LOCKED on these tables, not River: River's jobs carry their
// own attempt count, retry schedule and discarded state, so the per-hook
// concurrency limit (a paid River feature), the attempt log of the last 10,
// Retry-After, 410 deactivation, redelivery that resets attempts and keeps
// the eventId, dead letters that expire and are listed per hook, and cancel
// on hook delete would each be a translation between its model and ours,
// and the listing would read River's tables. Our own rows are what List,
// Redeliver and the dashboard read, and the attempt path is the Badger
// queue's.
//
// Enqueue, Hold and Confirm: the writes of a call are made in one
// transaction, committed with the server's synchronous_commit (on by
// default; the store must not turn it off) before the call returns. Calls
// share commits, as on Badger: a call that finds no commit in flight
// commits, in a goroutine of its own, every call waiting at that moment in
// one transaction (groupCommit, at most maxRound calls); calls arriving
// meanwhile wait for the next. The transaction first locks the rows of every
// event key its Holds and Confirms decide about, in key order, then decides
// each call in the order it came on those states, so a Hold and the Confirm
// of its event in one round go as they would one after the other. The
// round's new deliveries go in one multi-row INSERT at its end, or earlier
// when a Confirm releases what a Hold of the same round held. When the round
// fails, each call is tried again in a transaction of its own, so that one
// caller's bad write costs the others nothing. Delivery ids are made by each
// sidecar (aidx, with a node drawn at random): two sidecars that drew the
// same node can make the same id in the same millisecond, and the round that
// stores it second is made again with fresh ids (up to idTries times), so no
// call fails for it. A caller whose context ends first gets its error at
// once (Enqueue and Hold count their deliveries in
// oceanhooks_queue_enqueue_abandoned_total), and its write goes on. A round
// that stores ready deliveries sends NOTIFY on the schema's "queue" channel,
// which every sidecar's Run listens to, so another sidecar claims new work
// at once; PollInterval covers retries coming due and a lost notification.
//
// Claims: a delivery being attempted carries a lease in its row
// (lease_owner: the PGQueue's random name; lease_until: the database's
// clock plus AttemptTimeout + ShutdownGrace), taken by one UPDATE whose
// candidates are read with FOR UPDATE SKIP LOCKED. Claims of all sidecars
// take turns under a transaction-level advisory lock of the schema, and the
// claim statement counts each hook's live leases, so PerHookConcurrency
// holds across sidecars and no two sidecars ever lease one delivery. Every
// PollInterval each sidecar frees the leases past their time: a killed
// sidecar's deliveries are claimed by the others, or by itself after a
// restart, once its leases expire. A claim walks the hooks that have ready deliveries one
// index probe each (earliest due first), so a hook with a large backlog at
// its limit does not hold up the others. Workers bounds each sidecar's own
// attempts. A claim's commit waits for no sync (SET LOCAL
// synchronous_commit = off): its lease is visible to every sidecar once
// committed, and a crash of PostgreSQL that loses it leaves the delivery
// ready, to be sent again (at least once). The table is vacuumed early
// (storage parameters in the migration): every delivery's row is updated
// twice and deleted within minutes, and the claim's index probes would
// otherwise walk the dead entries.
//
// Outcomes (state, attempts, due, expiry, the attempt log entry, the lease
// ended) are written in batches: whatever outcomes gathered while the
// previous batch was written go in one transaction with SET LOCAL
// synchronous_commit = off, updating only rows whose lease is still the
// attempt's (an outcome never resurrects a delivery removed, redelivered or
// re-leased meanwhile). A batch PostgreSQL refuses is written again one
// outcome per transaction, so that one it refuses holds up no other; an
// outcome whose write fails is tried again every PollInterval while its
// lease lasts. Run's end writes every outcome and
// gives back every lease it still holds. A delivery of a hook this sidecar
// does not know yet is given back, due again after PollInterval, unless it
// is older than a minute and this sidecar hears the others' changes (its
// hook is gone: it is dropped); a hook made through another sidecar reaches
// this one within a second. The hooks'
// latest attempts go to the hook store in batches, as on Badger.
//
// What each crash leaves (a sidecar's SIGKILL, or PostgreSQL's own crash):
//
//   - During a write round's commit: every caller that got an answer has all
//     its writes stored; a caller that got none finds all or none of them.
//   - After a receiver accepted a delivery, before its outcome's batch is
//     durable: the delivery is leased until its lease expires, then ready with
//     its former attempt count and log, and sent again (same eventId: one
//     duplicate). Never lost, never dead on account of the crash. A
//     PostgreSQL crash loses at most the outcomes of the last moments (their
//     commits were not synced), with the same result.
//   - After a failed attempt, before its outcome is durable: the attempt is
//     made again and counted then. A delivery becomes dead only with the
//     write that records its last attempt, in one statement.
//   - A clean stop writes every outcome and gives its leases back at once.
//
// Delivery is at least once; no two sidecars attempt one delivery at the
// same time while the leases hold (an attempt is bounded by AttemptTimeout,
// within its lease; only a crash of PostgreSQL that lost a lease's commit
// lets another sidecar take that delivery while its attempt runs).
//
// Hold, Confirm and Settle keep the meaning of hold.go. An event key is a
// row of queue_event_keys, locked (and made when missing) by every round
// whose Holds and Confirms decide about it, so their calls on all sidecars
// are decided one after the other: a Confirm and a Hold of one event on two
// sidecars deliver it once, whichever comes first. Ocean's event stream is
// read by one sidecar at a time (the server leads it through
// pgstore.DB.Lead): a pub/sub message carries no id, so copies of one
// message confirmed by several sidecars could not be told apart from a
// recurring event's (a follow's key may occur again) or a keyless event's
// second occurrence. Settle takes the holds due with SKIP LOCKED, so that
// it never waits for a hold that a Confirm is releasing.
//
// The depth gauges count the store's rows (every sidecar's) at each scrape,
// each count over a partial index that holds just those rows; DeadLetters
// counts per hook the same way. The sweep removes delivered and dead rows
// past their expiry in batches, and expired event keys. CancelHook and
// redeliver-all run as on Badger (jobs.go); the redeliver-all cursor is a
// row of queue_jobs, moved in the transaction of each batch, and when a
// sidecar starts it removes the deliveries of hooks it does not know whose
// newest delivery is older than a minute.
package queue
