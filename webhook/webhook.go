// Package webhook holds the small data types that flow between the packages of
// oceanhooks: the event types Ocean knows, a derived event, and the views of a
// delivery and its attempts. It has no behaviour and imports nothing of ours.
package webhook

import (
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// User event types, in the order Ocean lists them (webhookEventTypes).
const (
	Mention  = "mention"
	Unfollow = "unfollow"
	Follow   = "follow"
	Followed = "followed"
	Note     = "note"
	Reply    = "reply"
	Renote   = "renote"
	Reaction = "reaction"
)

// Admin-only event types that Ocean accepts in `on` for administrators.
const (
	ReportCreated      = "reportCreated"
	ReportResolved     = "reportResolved"
	ReportAutoResolved = "reportAutoResolved"
)

// UserEventTypes are the event types any user may subscribe to.
var UserEventTypes = []string{Mention, Unfollow, Follow, Followed, Note, Reply, Renote, Reaction}

// AdminEventTypes are accepted in `on` only for administrators.
var AdminEventTypes = []string{ReportCreated, ReportResolved, ReportAutoResolved}

// IsUserEventType reports whether t is one of UserEventTypes.
func IsUserEventType(t string) bool { return slices.Contains(UserEventTypes, t) }

// IsAdminEventType reports whether t is one of AdminEventTypes.
func IsAdminEventType(t string) bool { return slices.Contains(AdminEventTypes, t) }

// Event is one domain event derived from an API call: the recipient (the user
// whose hooks receive it) and the body as Ocean would put it in the envelope
// (for example {"note":{…}} or {"user":{…}}).
type Event struct {
	Type   string
	UserID string
	Body   json.RawMessage
	// Key names the domain event across sources (the API tap and Ocean's
	// event stream), so that one event seen by both is delivered once; ""
	// where the event is not merged.
	Key string
	// Recurs says the same Key can stand for several events (a user
	// followed, unfollowed and followed again): each event with it is one
	// occurrence, matched one to one across sources. Without it, events of
	// one Key are repeats of one event (Ocean publishes a note twice).
	Recurs bool
}

// Delivery states as shown to users and operators.
const (
	StateReady     = "ready"     // waiting for its due time
	StateLeased    = "leased"    // a worker is attempting it
	StateDelivered = "delivered" // a receiver answered 2xx
	StateDead      = "dead"      // out of attempts or final failure; kept for redelivery
)

// Attempt is one recorded delivery attempt.
type Attempt struct {
	At       time.Time `json:"at"`
	Status   int       `json:"status"`             // HTTP status; 1 for a network error or timeout; 0 when nothing could be sent
	Duration int64     `json:"durationMs"`         // milliseconds
	Error    string    `json:"error,omitempty"`    // why it failed, if it did
	Response string    `json:"response,omitempty"` // first 4 KiB of the response body
}

// Delivery is the view of one queued delivery with its attempt log.
type Delivery struct {
	ID        string     `json:"id"`
	HookID    string     `json:"webhookId"`
	UserID    string     `json:"userId"`
	EventID   string     `json:"eventId"`
	Type      string     `json:"type"`
	CreatedAt time.Time  `json:"createdAt"`
	State     string     `json:"state"`
	NextAt    *time.Time `json:"nextAttemptAt"`
	Attempts  []Attempt  `json:"attempts"` // the latest ones, oldest first
	// Omitted is how many earlier attempts are not in Attempts: older than
	// the log keeps, or left out to bound the size of a listing.
	Omitted int `json:"omittedAttempts"`
}

// LatestAttempt is a hook's latest delivery attempt: what its latestSentAt
// and latestStatus show.
type LatestAttempt struct {
	At     time.Time
	Status int // as in Attempt
}

// Target is where and how a hook's deliveries go, read at attempt time so that
// an edited URL or secret applies to the next attempt.
type Target struct {
	HookID string
	UserID string // the hook owner
	URL    string
	Secret string
	Active bool
}

// TestSend is one test delivery (i/webhooks/test): a single attempt of a
// dummy payload, to the hook or to an override URL/secret.
type TestSend struct {
	HookID string
	UserID string
	URL    string
	Secret string
	Type   string
	Body   json.RawMessage
}

// ErrNoSuchDelivery is returned when a delivery id names no delivery of the hook.
var ErrNoSuchDelivery = errors.New("no such delivery")
