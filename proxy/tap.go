package proxy

import (
	"context"
	"net/http"
)

// Observation is what the proxy saw of one tapped API call: handed to the
// Consumer synchronously, before the client receives any byte of the response.
type Observation struct {
	// Endpoint is the API endpoint without the /api/ prefix, e.g. "notes/create".
	Endpoint string
	// Request is the request body exactly as the client sent it (JSON; empty
	// when the client sent none). The proxy forwards these very bytes: read
	// them, never modify them.
	Request []byte
	// Token is the caller's credential exactly as Ocean reads it
	// (ocean.ReadCredential); empty for an anonymous call. A call whose
	// credential Ocean could read differently is not observed at all. It
	// lives in memory for this call only: never log or store it.
	Token string
	// Status and Header are Ocean's response status (always 2xx: other
	// answers are not observed) and a copy of its headers.
	Status int
	Header http.Header
	// Response is Ocean's response body, decoded from gzip/br (or deflate,
	// zstd) if it was encoded; empty for 204 or an empty body. Read only.
	Response []byte
	// State is whatever the tap's Before step left for the consumer.
	State any
}

// Consumer turns observations into durable events. An error or a panic is
// logged and counted; it never changes what the client receives.
type Consumer interface {
	Observe(ctx context.Context, obs *Observation) error
}

// Tap registers one endpoint for inspection.
type Tap struct {
	// Endpoint without the /api/ prefix, e.g. "notes/create".
	Endpoint string
	// Wanted is the cheap gate, asked for every request to Endpoint before
	// anything is read. False means the call is proxied untouched: no
	// buffering, no parsing. Nil means always wanted.
	Wanted func() bool
	// Before, if set, runs after the request body was read and before the
	// request is forwarded (e.g. to read relations a block will remove). It may
	// set obs.State; Status, Header and Response are not yet filled. A panic is
	// recovered, logged and counted.
	Before func(ctx context.Context, obs *Observation)
}
