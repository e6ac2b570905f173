package proxy

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a Consumer that keeps a copy of every observation.
type recorder struct {
	mu        sync.Mutex
	seen      []Observation
	err       error
	panicWith any
	// hook, if set, runs at the start of Observe.
	hook func(ctx context.Context, obs *Observation)
}

func (r *recorder) Observe(ctx context.Context, obs *Observation) error {
	if r.hook != nil {
		r.hook(ctx, obs)
	}
	c := *obs
	c.Request = bytes.Clone(obs.Request)
	c.Response = bytes.Clone(obs.Response)
	c.Header = obs.Header.Clone()
	r.mu.Lock()
	r.seen = append(r.seen, c)
	r.mu.Unlock()
	if r.panicWith != nil {
		panic(r.panicWith)
	}
	return r.err
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *recorder) only(t *testing.T) Observation {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Len(t, r.seen, 1)
	return r.seen[0]
}

// seqLog records the order of events across goroutines.
type seqLog struct {
	mu     sync.Mutex
	events []string
}

func (s *seqLog) add(e string) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *seqLog) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// spyWriter notes when the proxy first writes anything to the client.
type spyWriter struct {
	http.ResponseWriter
	once  sync.Once
	first func()
}

func (s *spyWriter) WriteHeader(code int) {
	s.once.Do(s.first)
	s.ResponseWriter.WriteHeader(code)
}

func (s *spyWriter) Write(b []byte) (int, error) {
	s.once.Do(s.first)
	return s.ResponseWriter.Write(b)
}

func (s *spyWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// jsonUpstream answers every request with body as JSON.
func jsonUpstream(t *testing.T, status int, body string) *httptest.Server {
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Ocean", "1")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
}

// echoUpstream answers with a digest of the request body it received.
func echoUpstream(t *testing.T) *httptest.Server {
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprintf(w, `{"sha":%q,"contentType":%q}`, hashReader(t, r.Body), r.Header.Get("Content-Type"))
	}))
}

func tapOpts(rec *recorder, taps ...Tap) func(*Options) {
	return func(o *Options) {
		o.Consumer = rec
		o.Taps = taps
	}
}

func post(t *testing.T, sc *sidecar, path, contentType string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, sc.url(path), body)
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := sc.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp, readAll(t, resp.Body)
}

// TestTapObservesBeforeTheClientSeesAByte is the durability contract: the
// consumer has returned before the proxy writes anything to the client.
func TestTapObservesBeforeTheClientSeesAByte(t *testing.T) {
	upstream := jsonUpstream(t, http.StatusOK, `{"createdNote":{"id":"n1","text":"hi"}}`)
	seq := &seqLog{}
	entered, release := make(chan struct{}), make(chan struct{})
	rec := &recorder{hook: func(context.Context, *Observation) {
		seq.add("observe-start")
		close(entered)
		<-release
		seq.add("observe-end")
	}}
	sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))
	spied := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc.p.ServeHTTP(&spyWriter{ResponseWriter: w, first: func() { seq.add("first-write") }}, r)
	})
	sc = serveSidecar(t, sc.p, spied, sc.logs)

	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := sc.client.Post(sc.url("/api/notes/create"), "application/json", strings.NewReader(`{"text":"hi"}`))
		if err == nil {
			seq.add("client-has-headers")
		}
		done <- result{resp, err}
	}()

	<-entered
	select {
	case <-done:
		t.Fatal("the client got the response while the consumer was still running")
	default:
	}
	close(release)
	res := <-done
	require.NoError(t, res.err)
	defer res.resp.Body.Close()
	assert.JSONEq(t, `{"createdNote":{"id":"n1","text":"hi"}}`, string(readAll(t, res.resp.Body)))
	assert.Equal(t, []string{"observe-start", "observe-end", "first-write", "client-has-headers"}, seq.all())

	obs := rec.only(t)
	assert.Equal(t, "notes/create", obs.Endpoint)
	assert.JSONEq(t, `{"text":"hi"}`, string(obs.Request))
	assert.Equal(t, http.StatusOK, obs.Status)
	assert.Equal(t, "1", obs.Header.Get("X-Ocean"))
	assert.JSONEq(t, `{"createdNote":{"id":"n1","text":"hi"}}`, string(obs.Response))
	assert.Equal(t, 1.0, counter(t, sc.p.m.tappedCalls, "notes/create", "200"))
	assert.Equal(t, 1.0, sc.requests(t, "notes/create", "2xx"))
}

func zstded(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func zlibbed(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// TestTapDecodesEncodedResponses: the consumer reads the decoded JSON, the
// client gets Ocean's encoded bytes and headers untouched.
func TestTapDecodesEncodedResponses(t *testing.T) {
	payload := []byte(`{"createdNote":{"id":"n1","text":"` + strings.Repeat("compressible ", 40) + `"}}`)
	cases := []struct {
		encoding string
		body     []byte
	}{
		{"gzip", gzipped(t, payload)},
		{"br", brotlied(t, payload)},
		{"deflate", zlibbed(t, payload)},
		{"zstd", zstded(t, payload)},
		{"", payload},
	}
	for _, tc := range cases {
		t.Run("encoding "+tc.encoding, func(t *testing.T) {
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				if tc.encoding != "" {
					w.Header().Set("Content-Encoding", tc.encoding)
				}
				_, _ = w.Write(tc.body)
			}))
			rec := &recorder{}
			sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))

			resp, body := post(t, sc, "/api/notes/create", "application/json", strings.NewReader(`{"text":"x"}`),
				"Accept-Encoding", "gzip, deflate, br, zstd")
			assert.Equal(t, tc.encoding, resp.Header.Get("Content-Encoding"))
			assert.Equal(t, tc.body, body, "the client gets the original bytes")
			obs := rec.only(t)
			assert.JSONEq(t, string(payload), string(obs.Response))
		})
	}
}

// TestTapToken: the observed token is the one Ocean authenticates the call
// with (ocean.ReadCredential's table has every case).
func TestTapToken(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		header string
		want   string
	}{
		{"bearer header", `{"text":"x"}`, "Bearer tokA", "tokA"},
		{"body field i", `{"i":"tokB","text":"x"}`, "", "tokB"},
		{"bearer wins over i", `{"i":"tokB"}`, "Bearer tokA", "tokA"},
		{"lower-case bearer is not Ocean's: i wins", `{"i":"tokB"}`, "bearer tokA", "tokB"},
		{"upper-case BEARER alone is anonymous", `{}`, "BEARER tokA", ""},
		{"null i is anonymous", `{"i":null}`, "", ""},
		{"nested i ignored", `{"x":{"i":"tokD"}}`, "", ""},
		{"empty bearer falls back to i", `{"i":"tokE"}`, "Bearer ", "tokE"},
		{"no credential", `{}`, "", ""},
	}
	upstream := jsonUpstream(t, http.StatusOK, `{}`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))
			var hdr []string
			if tc.header != "" {
				hdr = []string{"Authorization", tc.header}
			}
			post(t, sc, "/api/notes/create", "application/json", strings.NewReader(tc.body), hdr...)
			assert.Equal(t, tc.want, rec.only(t).Token)
		})
	}
}

// TestTapSkipsCallsOceanCouldReadDifferently: a call whose credential or
// parameters Ocean could read otherwise than the tap is forwarded exactly as
// it came and never observed; it is counted and logged without its token.
func TestTapSkipsCallsOceanCouldReadDifferently(t *testing.T) {
	cases := []struct {
		name   string
		auth   []string
		body   string
		reason string
	}{
		{"two Authorization headers", []string{"Bearer tokSecretA", "Bearer tokSecretB"}, `{"userId":"v"}`, reasonCredential},
		{"two spaces after Bearer", []string{"Bearer  tokSecretA"}, `{"userId":"v"}`, reasonCredential},
		{"i not a string", nil, `{"i":42,"userId":"v"}`, reasonCredential},
		{"i twice", []string{"bearer tokSecretA"}, `{"i":"tokSecretA","userId":"v","i":"tokSecretB"}`, reasonDuplicateKeys},
		{"i twice, once escaped", nil, `{"i":"tokSecretA","\u0069":"tokSecretB"}`, reasonDuplicateKeys},
		{"userId twice", []string{"Bearer tokSecretA"}, `{"userId":"x","userId":"v"}`, reasonDuplicateKeys},
		{"a nested key twice", []string{"Bearer tokSecretA"}, `{"poll":{"choices":["a"],"choices":["b"]}}`, reasonDuplicateKeys},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			sc := newSidecar(t, echoUpstream(t).URL, tapOpts(rec, Tap{Endpoint: "following/create"}))
			req, err := http.NewRequest(http.MethodPost, sc.url("/api/following/create"), strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			for _, v := range tc.auth {
				req.Header.Add("Authorization", v)
			}
			resp, err := sc.client.Do(req)
			require.NoError(t, err)
			got := readAll(t, resp.Body)
			require.NoError(t, resp.Body.Close())

			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.JSONEq(t, fmt.Sprintf(`{"sha":%q,"contentType":"application/json"}`, sha([]byte(tc.body))), string(got),
				"Ocean gets the very bytes")
			assert.Zero(t, rec.count(), "nothing is derived")
			assert.Equal(t, 1.0, counter(t, sc.p.m.ambiguous, "following/create", tc.reason))
			logs := sc.logs.String()
			assert.Contains(t, logs, "level=WARN")
			assert.Contains(t, logs, "reason="+tc.reason)
			assert.NotContains(t, logs, "tokSecret", "no token is logged")
		})
	}
}

// onlyReader hides a reader's type so the client cannot know its length
// and sends the body chunked.
type onlyReader struct{ io.Reader }

func TestTapOverCapRequestPassesIntact(t *testing.T) {
	body := `{"text":"` + strings.Repeat("x", 200) + `"}`
	cases := []struct {
		name string
		body func() io.Reader
	}{
		{"known length", func() io.Reader { return strings.NewReader(body) }},
		{"chunked", func() io.Reader { return onlyReader{strings.NewReader(body)} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			sc := newSidecar(t, echoUpstream(t).URL, func(o *Options) {
				tapOpts(rec, Tap{Endpoint: "notes/create"})(o)
				o.TapBodyCap = 64
			})
			resp, got := post(t, sc, "/api/notes/create", "application/json", tc.body())
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.JSONEq(t, fmt.Sprintf(`{"sha":%q,"contentType":"application/json"}`, sha([]byte(body))), string(got))
			assert.Zero(t, rec.count())
			assert.Equal(t, 1.0, counter(t, sc.p.m.overCapBodies, "notes/create", dirRequest))
		})
	}
}

func TestTapOverCapResponsePassesIntact(t *testing.T) {
	big := []byte(`{"note":{"text":"` + strings.Repeat("y", 500) + `"}}`)
	bomb := gzipped(t, []byte(`{"text":"`+strings.Repeat("z", 20000)+`"}`))
	cases := []struct {
		name     string
		body     []byte
		encoding string
		chunked  bool
	}{
		{"known length", big, "", false},
		{"chunked", big, "", true},
		{"small when encoded, over the cap decoded", bomb, "gzip", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				if tc.encoding != "" {
					w.Header().Set("Content-Encoding", tc.encoding)
				}
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(tc.body)))
					_, _ = w.Write(tc.body)
					return
				}
				for chunk := range slicesChunk(tc.body, 100) {
					_, _ = w.Write(chunk)
					http.NewResponseController(w).Flush()
				}
			}))
			rec := &recorder{}
			sc := newSidecar(t, upstream.URL, func(o *Options) {
				tapOpts(rec, Tap{Endpoint: "notes/create"})(o)
				o.TapBodyCap = 256
			})
			require.Less(t, len(bomb), 256, "the bomb must fit the cap encoded")
			resp, got := post(t, sc, "/api/notes/create", "application/json", strings.NewReader(`{}`),
				"Accept-Encoding", "gzip")
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, tc.body, got)
			assert.Zero(t, rec.count())
			assert.Equal(t, 1.0, counter(t, sc.p.m.overCapBodies, "notes/create", dirResponse))
		})
	}
}

func TestTapPassesNonJSONRequests(t *testing.T) {
	cases := []struct {
		name, contentType, body string
	}{
		{"multipart", "multipart/form-data; boundary=xyz", "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--xyz--\r\n"},
		{"form", "application/x-www-form-urlencoded", "text=hi"},
		{"invalid json", "application/json", `{"text":`},
		{"no content type, not json", "", "hello"},
		{"text/plain, not json", "text/plain;charset=UTF-8", "hello"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			sc := newSidecar(t, echoUpstream(t).URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))
			_, got := post(t, sc, "/api/notes/create", tc.contentType, onlyReader{strings.NewReader(tc.body)})
			assert.JSONEq(t, fmt.Sprintf(`{"sha":%q,"contentType":%q}`, sha([]byte(tc.body)), tc.contentType), string(got))
			assert.Zero(t, rec.count())
			assert.Equal(t, 1.0, counter(t, sc.p.m.notJSONBodies, "notes/create", dirRequest))
		})
	}
}

func TestTapConsumerFailureLeavesResponseAlone(t *testing.T) {
	cases := []struct {
		name string
		rec  *recorder
	}{
		{"error", &recorder{err: errors.New("queue full")}},
		{"panic", &recorder{panicWith: "boom"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upstream := jsonUpstream(t, http.StatusOK, `{"createdNote":{"id":"n1"}}`)
			sc := newSidecar(t, upstream.URL, tapOpts(tc.rec, Tap{Endpoint: "notes/create"}))
			resp, got := post(t, sc, "/api/notes/create", "application/json", strings.NewReader(`{}`))
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "1", resp.Header.Get("X-Ocean"))
			assert.JSONEq(t, `{"createdNote":{"id":"n1"}}`, string(got))
			assert.Equal(t, 1, tc.rec.count())
			assert.Equal(t, 1.0, counter(t, sc.p.m.failures, "notes/create", stageObserve))
			assert.Contains(t, sc.logs.String(), "level=ERROR")
		})
	}
}

// TestTapNotWantedStreamsUntouched: when the gate says no, the body is not
// read before forwarding: the upstream sees the first bytes while the client
// is still writing.
func TestTapNotWantedStreamsUntouched(t *testing.T) {
	const head, tail = `{"text":"first half,`, ` second half"}`
	firstSeen := make(chan struct{})
	got := make(chan string, 1)
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, len(head))
		_, _ = io.ReadFull(r.Body, b)
		close(firstSeen)
		rest, _ := io.ReadAll(r.Body)
		got <- string(b) + string(rest)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"createdNote":{}}`)
	}))
	var asked atomic.Int32
	rec := &recorder{}
	sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{
		Endpoint: "notes/create",
		Wanted:   func() bool { asked.Add(1); return false },
		Before:   func(context.Context, *Observation) { t.Error("Before ran for an unwanted call") },
	}))

	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, head)
		select {
		case <-firstSeen:
		case <-time.After(guard):
			pw.CloseWithError(errors.New("the body was read before forwarding"))
			return
		}
		_, _ = io.WriteString(pw, tail)
		_ = pw.Close()
	}()
	resp, body := post(t, sc, "/api/notes/create", "application/json", pr)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"createdNote":{}}`, string(body))
	assert.Equal(t, head+tail, <-got)
	assert.Zero(t, rec.count())
	assert.Equal(t, int32(1), asked.Load())
	assert.Zero(t, counter(t, sc.p.m.tappedCalls, "notes/create", "200"))
	assert.Equal(t, 1.0, sc.requests(t, "notes/create", "2xx"))
}

func TestTapGatePanicMeansUntapped(t *testing.T) {
	rec := &recorder{}
	sc := newSidecar(t, echoUpstream(t).URL, tapOpts(rec, Tap{
		Endpoint: "notes/create",
		Wanted:   func() bool { panic("index broken") },
	}))
	resp, got := post(t, sc, "/api/notes/create", "application/json", strings.NewReader(`{"a":1}`))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, fmt.Sprintf(`{"sha":%q,"contentType":"application/json"}`, sha([]byte(`{"a":1}`))), string(got))
	assert.Zero(t, rec.count())
	assert.Equal(t, 1.0, counter(t, sc.p.m.failures, "notes/create", stageWanted))
}

func TestTapBeforeRunsBeforeUpstream(t *testing.T) {
	cases := []struct {
		name      string
		panics    bool
		wantState any
	}{
		{"sets state", false, "relations-before-block"},
		{"panics harmlessly", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seq := &seqLog{}
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seq.add("upstream")
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{}`)
			}))
			rec := &recorder{hook: func(context.Context, *Observation) { seq.add("observe") }}
			sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{
				Endpoint: "blocking/create",
				Before: func(ctx context.Context, obs *Observation) {
					seq.add("before")
					assert.JSONEq(t, `{"userId":"au1lb5al9jzs0005"}`, string(obs.Request))
					assert.Equal(t, "tok", obs.Token)
					assert.Zero(t, obs.Status)
					if tc.panics {
						panic("before failed")
					}
					obs.State = tc.wantState
				},
			}))
			resp, body := post(t, sc, "/api/blocking/create", "application/json",
				strings.NewReader(`{"userId":"au1lb5al9jzs0005"}`), "Authorization", "Bearer tok")
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.JSONEq(t, `{}`, string(body))
			assert.Equal(t, []string{"before", "upstream", "observe"}, seq.all())
			assert.Equal(t, tc.wantState, rec.only(t).State)
			want := 0.0
			if tc.panics {
				want = 1
			}
			assert.Equal(t, want, counter(t, sc.p.m.failures, "blocking/create", stageBefore))
		})
	}
}

func TestTapIgnoresUnsuccessfulResponses(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			errBody := `{"error":{"message":"x","code":"X","id":"1","kind":"client"}}`
			upstream := jsonUpstream(t, status, errBody)
			rec := &recorder{}
			sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))
			resp, got := post(t, sc, "/api/notes/create", "application/json", strings.NewReader(`{}`))
			assert.Equal(t, status, resp.StatusCode)
			assert.JSONEq(t, errBody, string(got))
			assert.Zero(t, rec.count())
			assert.Equal(t, 1.0, counter(t, sc.p.m.tappedCalls, "notes/create", fmt.Sprint(status)))
		})
	}
}

func TestTapObservesEmptySuccesses(t *testing.T) {
	cases := []struct {
		name   string
		status int
	}{
		{"204", http.StatusNoContent},
		{"200 empty", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
			}))
			rec := &recorder{}
			sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "notes/delete"}))
			resp, got := post(t, sc, "/api/notes/delete", "application/json", strings.NewReader(`{"noteId":"n1"}`))
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Empty(t, got)
			obs := rec.only(t)
			assert.Equal(t, tc.status, obs.Status)
			assert.Empty(t, obs.Response)
		})
	}
}

// TestTapTakesWhatOceanParsesAsJSON: application/json in any case, with
// parameters, is tapped; Ocean's API refuses a body of another type (or none)
// or reads it as one string, so such calls are forwarded untapped.
func TestTapTakesWhatOceanParsesAsJSON(t *testing.T) {
	cases := []struct {
		contentType string
		tapped      bool
	}{
		{"application/json", true},
		{"Application/JSON; charset=utf-8", true},
		{"text/plain;charset=UTF-8", false},
		{"", false},
		{"application/activity+json", false},
	}
	for _, tc := range cases {
		t.Run("content type "+tc.contentType, func(t *testing.T) {
			rec := &recorder{}
			sc := newSidecar(t, echoUpstream(t).URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))
			body := `{"i":"tok","text":"hi"}`
			_, got := post(t, sc, "/api/notes/create", tc.contentType, strings.NewReader(body))
			assert.JSONEq(t, fmt.Sprintf(`{"sha":%q,"contentType":%q}`, sha([]byte(body)), tc.contentType), string(got))
			if !tc.tapped {
				assert.Zero(t, rec.count())
				assert.Equal(t, 1.0, counter(t, sc.p.m.notJSONBodies, "notes/create", dirRequest))
				return
			}
			obs := rec.only(t)
			assert.JSONEq(t, body, string(obs.Request))
			assert.Equal(t, "tok", obs.Token)
		})
	}
}

func TestTapObservesEmptyRequestBody(t *testing.T) {
	upstream := jsonUpstream(t, http.StatusOK, `{"ok":true}`)
	rec := &recorder{}
	sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "i/read-all-unread-notes"}))
	post(t, sc, "/api/i/read-all-unread-notes", "", nil, "Authorization", "Bearer tok")
	obs := rec.only(t)
	assert.Empty(t, obs.Request)
	assert.Equal(t, "tok", obs.Token)
}

func TestTapSkipsUnusableResponses(t *testing.T) {
	cases := []struct {
		name, contentType, encoding, body string
		failure                           func(sc *sidecar) float64
	}{
		{"html", "text/html", "", "<html></html>", func(sc *sidecar) float64 {
			return counter(t, sc.p.m.notJSONBodies, "notes/create", dirResponse)
		}},
		{"invalid json", "application/json", "", `{"a":`, func(sc *sidecar) float64 {
			return counter(t, sc.p.m.notJSONBodies, "notes/create", dirResponse)
		}},
		{"unknown encoding", "application/json", "compress", "\x1f\x9d????", func(sc *sidecar) float64 {
			return counter(t, sc.p.m.failures, "notes/create", stageDecode)
		}},
		{"corrupt gzip", "application/json", "gzip", "not gzip at all", func(sc *sidecar) float64 {
			return counter(t, sc.p.m.failures, "notes/create", stageDecode)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				if tc.encoding != "" {
					w.Header().Set("Content-Encoding", tc.encoding)
				}
				_, _ = io.WriteString(w, tc.body)
			}))
			rec := &recorder{}
			sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))
			resp, got := post(t, sc, "/api/notes/create", "application/json", strings.NewReader(`{}`))
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, tc.body, string(got))
			assert.Zero(t, rec.count())
			assert.Equal(t, 1.0, tc.failure(sc))
		})
	}
}

func TestUntappedCallsAreNeverObserved(t *testing.T) {
	upstream := jsonUpstream(t, http.StatusOK, `{}`)
	rec := &recorder{}
	sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{Endpoint: "notes/create"}))
	post(t, sc, "/api/notes/timeline", "application/json", strings.NewReader(`{}`))
	post(t, sc, "/api/notes/create/", "application/json", strings.NewReader(`{}`))
	resp, err := sc.client.Get(sc.url("/api/notes/create"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Zero(t, rec.count())
	assert.Zero(t, counter(t, sc.p.m.tappedCalls, "notes/create", "200"))
}

// TestObserveOutlivesTheClient: Ocean carried the call out, so the consumer
// keeps a live context even when the client hangs up meanwhile.
func TestObserveOutlivesTheClient(t *testing.T) {
	upstream := jsonUpstream(t, http.StatusOK, `{"createdNote":{"id":"n1"}}`)
	entered := make(chan struct{})
	consumerErr := make(chan error, 1)
	rec := &recorder{hook: func(ctx context.Context, obs *Observation) {
		close(entered)
		reqCtx := obs.State.(context.Context)
		select {
		case <-reqCtx.Done():
			consumerErr <- ctx.Err()
		case <-time.After(guard):
			consumerErr <- errors.New("the request context was never cancelled")
		}
	}}
	sc := newSidecar(t, upstream.URL, tapOpts(rec, Tap{
		Endpoint: "notes/create",
		Before:   func(ctx context.Context, obs *Observation) { obs.State = ctx },
	}))

	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sc.url("/api/notes/create"), strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := sc.client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	<-done
	assert.NoError(t, <-consumerErr, "the consumer's context died with the client")
	require.Eventually(t, func() bool { return rec.count() == 1 }, guard, 5*time.Millisecond)
}

func TestReadCapped(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		limit    int64
		hint     int64
		wantOver bool
	}{
		{"empty", "", 10, -1, false},
		{"under", "abc", 10, -1, false},
		{"exactly the cap", "0123456789", 10, -1, false},
		{"exactly the cap with hint", "0123456789", 10, 10, false},
		{"one over", "0123456789a", 10, -1, true},
		{"far over", strings.Repeat("x", 5000), 10, -1, true},
		{"long under", strings.Repeat("x", 5000), 8000, -1, false},
		{"wrong hint", strings.Repeat("x", 50), 100, 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.NewReader(tc.in)
			buf, over, err := readCapped(src, tc.limit, tc.hint)
			require.NoError(t, err)
			assert.Equal(t, tc.wantOver, over)
			assert.LessOrEqual(t, int64(len(buf)), tc.limit+1, "read more than cap+1")
			// The bytes read followed by the rest are the input.
			rest, _ := io.ReadAll(src)
			assert.Equal(t, tc.in, string(buf)+string(rest))
		})
	}
}
