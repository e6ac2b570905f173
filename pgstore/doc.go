// Package pgstore is the PostgreSQL side of oceanhooks' store: the
// connection pool of the hook store and the queue when store.backend is
// postgres, their schema and its migrations, and the LISTEN/NOTIFY channel
// through which several sidecars sharing one database learn of each other's
// changes.
//
// # Schema
//
// Everything lives in one schema of its own (store.postgres.schema, default
// "oceanhooks"), so the store can share Ocean's database or use one of its
// own. Every connection of the pool has that schema as its search_path; the
// SQL of the hook store and the queue names tables unqualified.
//
// # Migrations
//
// The schema is versioned: migrations/NNNN_name.sql are applied in order of
// NNNN, each in its own transaction together with its row in
// schema_migrations, so a migration is applied entirely or not at all.
// Migrate holds a session advisory lock (per schema) while it reads and
// applies them: several sidecars starting at once apply each migration once,
// the others wait and find nothing left to do. A database migrated by a newer
// oceanhooks (a version this build does not know) is refused, never written.
//
// # Notifications
//
// Listen keeps one dedicated connection listening on the given channels and
// hands every notification to its callback. Notifications sent while it is
// disconnected are lost, so after every (re)connect, before notifications
// flow, it calls onConnect: a full reload there covers whatever was missed.
// Channel names carry the schema, so two stores in two schemas of one
// database never hear each other.
package pgstore
