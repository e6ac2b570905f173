// Command upstream is a fast fake Ocean for the benchmarks: it answers
// POST /api/i for bench tokens, POST /api/notes/create with a captured
// createdNote (fresh id, the caller as author; with -mention-users, mentioning
// the next user), POST /api/i/webhooks/list
// with [] (no hook of the user's in Ocean), POST /api/i/webhooks/update
// with Ocean's NO_SUCH_WEBHOOK (the sidecar's write:account check of an app
// token: every bench token holds the permission), a WebSocket on /streaming
// that echoes every message, and every other request with the same 1 KiB of
// JSON. Answers are assembled from prebuilt bytes, so the
// upstream costs as little as a Go HTTP server can.
//
// Tokens are "tok-<n>"; the token's user id is "user<n>". Any other token is
// refused with Ocean's AUTHENTICATION_FAILED.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/oceanhooks/oceanhooks/bench/internal/fixture"
	"github.com/oceanhooks/oceanhooks/ocean"
)

const tokenPrefix = "tok-"

func main() {
	listen := flag.String("listen", "127.0.0.1:18300", "address to listen on")
	limit := flag.Int("webhook-limit", 3, "policies.webhookLimit answered by /api/i")
	mention := flag.Int("mention-users", 0, "when > 0, the note of user<n> mentions user<(n+1) mod this> (createdNote.mentions), so that it derives a mention event too")
	flag.Parse()
	u, err := newUpstream(*limit, *mention)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *listen, Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// upstream serves the fake Ocean.
type upstream struct {
	webhookLimit int
	mentionUsers int
	// note is the createdNote answer split around its variable parts:
	// note[0] fill[0] note[1] fill[1] … note[len-1].
	note    [][]byte
	fills   []noteField
	generic []byte
	idBase  string        // start time in base 36, so that restarts never repeat an id
	seq     atomic.Uint64 // note counter
	bufs    sync.Pool
}

type noteField int

const (
	fieldID noteField = iota
	fieldUser
	fieldMention
)

const (
	idMark      = "@@ID@@"
	userMark    = "@@USER@@"
	mentionMark = "@@MENTION@@"
)

func newUpstream(webhookLimit, mentionUsers int) (*upstream, error) {
	u := &upstream{
		webhookLimit: webhookLimit,
		mentionUsers: mentionUsers,
		idBase:       strconv.FormatInt(time.Now().UnixMilli(), 36),
		bufs:         sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
	tmpl := bytes.TrimSpace(fixture.CreatedNote)
	var err error
	for path, mark := range map[string]string{
		"createdNote.id": idMark, "createdNote.userId": userMark, "createdNote.user.id": userMark,
	} {
		if tmpl, err = sjson.SetBytes(tmpl, path, mark); err != nil {
			return nil, fmt.Errorf("template %s: %w", path, err)
		}
	}
	if mentionUsers > 0 {
		if tmpl, err = sjson.SetBytes(tmpl, "createdNote.mentions", []string{mentionMark}); err != nil {
			return nil, fmt.Errorf("template mentions: %w", err)
		}
	}
	// Split the template at each mark, in order of appearance.
	marks := []struct {
		mark  string
		field noteField
	}{{idMark, fieldID}, {userMark, fieldUser}, {mentionMark, fieldMention}}
	for len(tmpl) > 0 {
		at, which := -1, 0
		for k, m := range marks {
			if i := bytes.Index(tmpl, []byte(m.mark)); i >= 0 && (at < 0 || i < at) {
				at, which = i, k
			}
		}
		if at < 0 {
			u.note = append(u.note, tmpl)
			break
		}
		u.note = append(u.note, tmpl[:at])
		u.fills = append(u.fills, marks[which].field)
		tmpl = tmpl[at+len(marks[which].mark):]
	}
	u.generic = genericAnswer(1024)
	return u, nil
}

// genericAnswer is a JSON array of note-like objects exactly size bytes long.
func genericAnswer(size int) []byte {
	var b []byte
	b = append(b, '[')
	for i := 0; ; i++ {
		item := fmt.Sprintf(`{"id":"9x%014d","userId":"user%d","text":"timeline entry %d","visibility":"public","renoteCount":0,"repliesCount":0,"reactions":{}}`, i, i, i)
		if len(b)+len(item)+2 > size-40 {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, item...)
	}
	// Pad with one last object whose text fills the rest.
	pad := size - len(b) - len(`,{"id":"pad","text":""}]`)
	b = append(b, `,{"id":"pad","text":"`...)
	b = append(b, strings.Repeat("x", max(pad, 0))...)
	b = append(b, `"}]`...)
	return b
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/streaming" {
		echo(w, r)
		return
	}
	buf := u.bufs.Get().(*bytes.Buffer)
	defer u.bufs.Put(buf)
	buf.Reset()
	if r.Body != nil {
		if _, err := buf.ReadFrom(io.LimitReader(r.Body, 1<<20)); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	}
	switch r.URL.Path {
	case "/api/i":
		n, ok := u.caller(r, buf.Bytes())
		if !ok {
			authFailed(w)
			return
		}
		out := fmt.Appendf(buf.Bytes()[:0], `{"id":"user%s","isAdmin":false,"policies":{"webhookLimit":%d}}`, n, u.webhookLimit)
		writeJSON(w, out)
	case "/api/i/webhooks/list":
		// The bench users have no hooks in Ocean: the sidecar's takeover of
		// native hooks at a user's first hook call finds none.
		if _, ok := u.caller(r, buf.Bytes()); !ok {
			authFailed(w)
			return
		}
		writeJSON(w, []byte("[]"))
	case "/api/i/webhooks/update":
		if _, ok := u.caller(r, buf.Bytes()); !ok {
			authFailed(w)
			return
		}
		ocean.Write(w, ocean.ErrNoSuchWebhookUpdate)
	case "/api/notes/create":
		n, ok := u.caller(r, buf.Bytes())
		if !ok {
			authFailed(w)
			return
		}
		writeJSON(w, u.appendNote(buf.Bytes()[:0], n))
	default:
		writeJSON(w, u.generic)
	}
}

// echo answers a WebSocket upgrade and sends every message back.
func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// caller is the <n> of the request's tok-<n> token: Authorization first,
// else the body's "i".
func (u *upstream) caller(r *http.Request, body []byte) (string, bool) {
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found {
		tok = gjson.GetBytes(body, "i").String()
	}
	n, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok || n == "" {
		return "", false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return "", false
		}
	}
	return n, true
}

// appendNote appends a createdNote answer with a fresh note id, authored by
// user<n>.
func (u *upstream) appendNote(dst []byte, n string) []byte {
	seq := u.seq.Add(1)
	for i, part := range u.note {
		dst = append(dst, part...)
		if i == len(u.fills) {
			break
		}
		switch u.fills[i] {
		case fieldID:
			dst = append(dst, u.idBase...)
			dst = append(dst, 'n')
			dst = strconv.AppendUint(dst, seq, 36)
		case fieldUser:
			dst = append(dst, "user"...)
			dst = append(dst, n...)
		case fieldMention:
			k, _ := strconv.Atoi(n)
			dst = append(dst, "user"...)
			dst = strconv.AppendInt(dst, int64((k+1)%u.mentionUsers), 10)
		}
	}
	return dst
}

func writeJSON(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func authFailed(w http.ResponseWriter) { ocean.Write(w, ocean.ErrAuthenticationFailed) }
