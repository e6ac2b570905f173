package ocean

import "time"

// NoteCreateRepeatWindow is how long Ocean remembers a notes/create: for
// this long after it created the note (it keeps the note's id under the
// user's id and a hash of the request's parameters), the same request by
// the same user is answered with that earlier note, packed afresh, and fires
// nothing. Ocean starts the window after the note was created and before it
// answers, so the earlier note can only come back within this time of the
// first answer.
const NoteCreateRepeatWindow = 60 * time.Second
