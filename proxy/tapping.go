package proxy

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// tapKey carries a tapped call's state from ServeHTTP to ModifyResponse.
type tapKey struct{}

type tapState struct {
	rt  *route
	obs Observation
}

// serveTapped reads the request body (at most the cap), runs the tap's
// Before step and forwards through the inspecting ReverseProxy. A body the
// tap cannot use is forwarded exactly as it came, untapped.
func (p *Proxy) serveTapped(ex *exchange, r *http.Request, rt *route, tap *Tap) {
	body, token, ok := p.readRequest(r, rt)
	if !ok {
		ex.watchBody(r)
		p.plain.ServeHTTP(ex, r)
		return
	}
	st := &tapState{rt: rt, obs: Observation{
		Endpoint: rt.label,
		Request:  body,
		Token:    token,
	}}
	if tap.Before != nil {
		p.before(r.Context(), st)
	}
	r = r.WithContext(context.WithValue(r.Context(), tapKey{}, st))
	ex.watchBody(r)
	p.tapped.ServeHTTP(ex, r)
}

// readRequest reads a tapped request's body and puts it back in front of
// whatever was not read, and reads the caller's credential as Ocean does. It
// reports false when the call cannot be tapped: not a JSON body Ocean
// accepts, over the cap, the client's body failed, or a call Ocean could
// read differently from us (its credential, or keys given twice, of which
// Ocean keeps the last and the matchers' reader the first).
func (p *Proxy) readRequest(r *http.Request, rt *route) (body []byte, token string, ok bool) {
	ct := r.Header.Get("Content-Type")
	if ct != "" && !isJSONRequestType(ct) {
		p.m.notJSON(rt.label, dirRequest)
		return nil, "", false
	}
	if r.ContentLength > p.bodyCap {
		p.m.overCap(rt.label, dirRequest)
		return nil, "", false
	}
	var buf []byte
	if r.Body != nil && r.Body != http.NoBody {
		var over bool
		var err error
		buf, over, err = readCapped(r.Body, p.bodyCap, r.ContentLength)
		r.Body = replay(buf, r.Body)
		switch {
		case over:
			p.m.overCap(rt.label, dirRequest)
			return nil, "", false
		case err != nil:
			// The client's side failed; forwarding shows the same failure.
			p.log.Debug("reading tapped request body", "endpoint", rt.label, "err", err)
			return nil, "", false
		case len(buf) > 0 && (ct == "" || !json.Valid(buf)):
			// Ocean refuses a body of no type as well as malformed JSON.
			p.m.notJSON(rt.label, dirRequest)
			return nil, "", false
		case len(buf) > 0 && ocean.HasDuplicateKeys(buf):
			p.ambiguous(rt.label, reasonDuplicateKeys, nil)
			return nil, "", false
		}
	}
	cred, err := ocean.ReadCredential(r, buf)
	if err != nil {
		p.ambiguous(rt.label, reasonCredential, err)
		return nil, "", false
	}
	return buf, cred.Token, true
}

// ambiguous counts and logs a call passed through underived because Ocean
// could read it differently from us. Neither token nor body is logged.
func (p *Proxy) ambiguous(label, reason string, err error) {
	p.m.ambiguousRequest(label, reason)
	args := []any{"endpoint", label, "reason", reason}
	if err != nil {
		args = append(args, "err", err)
	}
	p.log.Warn("tapped call not derived: Ocean could read it differently", args...)
}

func (p *Proxy) before(ctx context.Context, st *tapState) {
	defer func() {
		if v := recover(); v != nil {
			p.m.tapFailure(st.rt.label, stageBefore)
			p.log.Error("tap before step panicked", "endpoint", st.rt.label, "panic", v)
		}
	}()
	st.rt.tap.Before(ctx, &st.obs)
}

// inspectResponse is the tapped ReverseProxy's ModifyResponse. For a 2xx
// JSON answer within the cap it hands the observation to the Consumer and
// returns only after the Consumer did, so the events are durable before the
// client sees a byte. It never fails: whatever goes wrong, the client gets
// Ocean's status, headers and bytes.
func (p *Proxy) inspectResponse(res *http.Response) error {
	st, _ := res.Request.Context().Value(tapKey{}).(*tapState)
	if st == nil {
		return nil
	}
	label := st.rt.label
	p.m.tapped(st.rt, res.StatusCode)
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil
	}
	st.obs.Status = res.StatusCode
	st.obs.Header = res.Header.Clone()
	if res.StatusCode != http.StatusNoContent && res.ContentLength != 0 && res.Body != nil && res.Body != http.NoBody {
		decoded, ok := p.readResponse(res, label)
		if !ok {
			return nil
		}
		st.obs.Response = decoded
	}
	p.observe(res.Request.Context(), st)
	return nil
}

// readResponse reads a tapped response body within the cap, puts the bytes
// back for the client and returns the body decoded for inspection.
func (p *Proxy) readResponse(res *http.Response, label string) ([]byte, bool) {
	if ct := res.Header.Get("Content-Type"); ct != "" && !isJSONType(ct) {
		p.m.notJSON(label, dirResponse)
		return nil, false
	}
	if res.ContentLength > p.bodyCap {
		p.m.overCap(label, dirResponse)
		return nil, false
	}
	raw, over, err := readCapped(res.Body, p.bodyCap, res.ContentLength)
	res.Body = replay(raw, res.Body)
	if over {
		p.m.overCap(label, dirResponse)
		return nil, false
	}
	if err != nil {
		p.m.tapFailure(label, stageRead)
		p.log.Warn("reading tapped response body", "endpoint", label, "err", err)
		return nil, false
	}
	decoded, err := decodeBody(res.Header.Get("Content-Encoding"), raw, p.bodyCap)
	if errors.Is(err, errOverCap) {
		p.m.overCap(label, dirResponse)
		return nil, false
	}
	if err != nil {
		p.m.tapFailure(label, stageDecode)
		p.log.Warn("decoding tapped response body", "endpoint", label, "err", err)
		return nil, false
	}
	if len(decoded) > 0 && !json.Valid(decoded) {
		p.m.notJSON(label, dirResponse)
		return nil, false
	}
	return decoded, true
}

// observe runs the Consumer synchronously. Its context keeps the request's
// values but not its cancellation: Ocean already carried the call out.
func (p *Proxy) observe(ctx context.Context, st *tapState) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.observeTimeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			p.m.tapFailure(st.rt.label, stageObserve)
			p.log.Error("tap consumer panicked", "endpoint", st.rt.label, "panic", v)
		}
	}()
	if err := p.consumer.Observe(ctx, &st.obs); err != nil {
		p.m.tapFailure(st.rt.label, stageObserve)
		p.log.Error("tap consumer failed", "endpoint", st.rt.label, "err", err)
	}
}

var errOverCap = errors.New("body over the tap cap")

// readCapped reads r to its end but never more than limit+1 bytes; over
// reports that there was more than limit. hint is the expected length, or
// -1. The bytes read are returned in every case, so they can be replayed.
func readCapped(r io.Reader, limit, hint int64) (buf []byte, over bool, err error) {
	size := int64(512)
	if hint >= 0 {
		size = min(hint, limit) + 1
	}
	buf = make([]byte, 0, min(size, limit+1))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := min(int64(cap(buf)), limit+1)
		n, rerr := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, true, nil
		}
		if rerr == io.EOF {
			return buf, false, nil
		}
		if rerr != nil {
			return buf, false, rerr
		}
	}
}

// replayBody gives back the bytes already read, then the rest of the
// stream.
type replayBody struct {
	io.Reader
	rest io.Closer
}

func (b *replayBody) Close() error { return b.rest.Close() }

func replay(prefix []byte, rest io.ReadCloser) io.ReadCloser {
	if len(prefix) == 0 {
		return rest
	}
	return &replayBody{Reader: io.MultiReader(bytes.NewReader(prefix), rest), rest: rest}
}

// decodeBody undoes a Content-Encoding for inspection, within limit.
func decodeBody(encoding string, raw []byte, limit int64) ([]byte, error) {
	var zr io.Reader
	switch enc := strings.ToLower(strings.TrimSpace(encoding)); enc {
	case "", "identity":
		return raw, nil
	case "gzip", "x-gzip":
		gr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer gr.Close()
		zr = gr
	case "br":
		zr = brotli.NewReader(bytes.NewReader(raw))
	case "deflate":
		// HTTP's deflate is zlib-wrapped; some servers send it raw.
		if fr, err := zlib.NewReader(bytes.NewReader(raw)); err == nil {
			defer fr.Close()
			zr = fr
		} else {
			fr := flate.NewReader(bytes.NewReader(raw))
			defer fr.Close()
			zr = fr
		}
	case "zstd":
		d, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer d.Close()
		zr = d
	default:
		return nil, fmt.Errorf("content encoding %q not supported", enc)
	}
	out, over, err := readCapped(zr, limit, -1)
	if over {
		return nil, errOverCap
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", encoding, err)
	}
	return out, nil
}

// isJSONRequestType reports whether Ocean's API parses a request body of
// this Content-Type as JSON: application/json only, parameters aside. It
// refuses +json types, and reads a text/plain body as one string (which no
// endpoint accepts), so neither is tapped.
func isJSONRequestType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// isJSONType reports whether a Content-Type names JSON (application/json or
// a +json type), parameters aside.
func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	return strings.EqualFold(mt, "application/json") ||
		(len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json"))
}
