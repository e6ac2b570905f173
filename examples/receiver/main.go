// Command receiver is an example webhook receiver for oceanhooks, written with
// the Go standard library only: it checks the hook's shared secret, verifies
// the Standard Webhooks signature, refuses stale timestamps, and handles each
// eventId once (deliveries are at least once: a retry after a lost answer
// brings the same eventId again).
//
//	go run ./examples/receiver -listen 127.0.0.1:8080 -secret 'the hook secret'
//
// The secret is the one given when the hook was created: either any string
// (signed with its bytes) or a Standard Webhooks secret "whsec_<base64>"
// (signed with the decoded key). Give it through the environment variable
// RECEIVER_SECRET instead of -secret to keep it out of the process list.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tolerance is how far a delivery's webhook-timestamp may be from the
// receiver's clock (Standard Webhooks' usual five minutes).
const Tolerance = 5 * time.Minute

// maxBody bounds what the receiver reads of a delivery.
const maxBody = 4 << 20

// Envelope is the delivery body oceanhooks (and Ocean) sends.
type Envelope struct {
	Server    string          `json:"server"`
	HookID    string          `json:"hookId"`
	UserID    string          `json:"userId"`
	EventID   string          `json:"eventId"`
	CreatedAt int64           `json:"createdAt"`
	Type      string          `json:"type"`
	Body      json.RawMessage `json:"body"`
}

// Receiver is an http.Handler for webhook deliveries.
type Receiver struct {
	Secret string           // the hook's secret as configured
	Prefix string           // header prefix: "Ocean" (default) or "Misskey"
	Now    func() time.Time // the clock; default time.Now
	// Handle processes one event, once per eventId.
	Handle func(Envelope) error

	mu   sync.Mutex
	seen map[string]time.Time // eventId → when it was handled
}

// Errors of Verify; each answers 4xx, so the sender stops retrying a
// delivery that can never pass.
var (
	ErrSecret    = errors.New("wrong hook secret")
	ErrUnsigned  = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrStale     = errors.New("timestamp too old or too far in the future")
	ErrSignature = errors.New("no valid signature")
	ErrMismatch  = errors.New("webhook-id differs from the body's eventId")
)

// key is the HMAC key of a secret: the decoded key of "whsec_<base64>", else
// the secret's bytes.
func key(secret string) []byte {
	if enc, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(enc); err == nil && len(k) > 0 {
			return k
		}
	}
	return []byte(secret)
}

// Verify checks a delivery's headers and body against secret at now.
func Verify(secret, prefix string, h http.Header, body []byte, now time.Time) error {
	// 1. The shared secret, which Ocean itself sends in this header.
	got := h.Get("X-" + prefix + "-Hook-Secret")
	if subtle.ConstantTimeCompare([]byte(got), []byte(secret)) != 1 {
		return ErrSecret
	}
	// 2. The Standard Webhooks signature over "id.timestamp.body".
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return ErrUnsigned
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrUnsigned
	}
	// 3. A replay of an old delivery is refused by its timestamp, which the
	// signature covers.
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return ErrStale
	}
	mac := hmac.New(sha256.New, key(secret))
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		if raw, err := base64.StdEncoding.DecodeString(b64); err == nil && hmac.Equal(raw, want) {
			return nil
		}
	}
	return ErrSignature
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "body unreadable or too large", http.StatusBadRequest)
		return
	}
	now := time.Now
	if rc.Now != nil {
		now = rc.Now
	}
	prefix := rc.Prefix
	if prefix == "" {
		prefix = "Ocean"
	}
	if err := Verify(rc.Secret, prefix, r.Header, body, now()); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil || env.EventID == "" {
		http.Error(w, "not a webhook envelope", http.StatusBadRequest)
		return
	}
	if env.EventID != r.Header.Get("webhook-id") {
		http.Error(w, ErrMismatch.Error(), http.StatusBadRequest)
		return
	}
	// 4. At least once: the same eventId may come again (a retry after an
	// answer that was lost). Handle it once; answer 2xx again so that the
	// sender stops. A real receiver keeps this record in its database,
	// written in the same transaction as the event's effect.
	if !rc.claim(env.EventID, now()) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "duplicate eventId: already handled\n")
		return
	}
	if rc.Handle != nil {
		if err := rc.Handle(env); err != nil {
			rc.release(env.EventID)
			http.Error(w, "failed; send it again", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// claim records eventID as handled; false when it already was. Records older
// than twice the tolerance are forgotten: a replay that old fails Verify.
func (rc *Receiver) claim(eventID string, now time.Time) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.seen == nil {
		rc.seen = map[string]time.Time{}
	}
	if _, dup := rc.seen[eventID]; dup {
		return false
	}
	for id, at := range rc.seen {
		if now.Sub(at) > 2*Tolerance {
			delete(rc.seen, id)
		}
	}
	rc.seen[eventID] = now
	return true
}

func (rc *Receiver) release(eventID string) {
	rc.mu.Lock()
	delete(rc.seen, eventID)
	rc.mu.Unlock()
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	secret := flag.String("secret", os.Getenv("RECEIVER_SECRET"), "the hook's secret (default $RECEIVER_SECRET)")
	prefix := flag.String("prefix", "Ocean", "header prefix the sidecar uses: Ocean or Misskey")
	flag.Parse()
	if *secret == "" {
		fmt.Fprintln(os.Stderr, "receiver: a secret is required (-secret or RECEIVER_SECRET)")
		os.Exit(2)
	}
	rc := &Receiver{Secret: *secret, Prefix: *prefix, Handle: func(e Envelope) error {
		log.Printf("event %s: %s for user %s from %s", e.EventID, e.Type, e.UserID, e.Server)
		return nil
	}}
	srv := &http.Server{Addr: *listen, Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("receiver listening on %s", *listen)
	log.Fatal(srv.ListenAndServe())
}
