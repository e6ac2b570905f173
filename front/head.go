package front

import (
	"bufio"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// writeHead writes the status line and headers into the buffer, deciding
// the framing as net/http's server does. auto is set when the handler
// returned: a body held back whole then gets its length. first is the body
// write that made the head go out, for sniffing when nothing was held.
func (w *response) writeHead(auto bool, first []byte) {
	w.headOut = true
	h := w.header
	if w.snap != nil {
		h = w.snap
	}
	req, code := w.req, w.status
	isHEAD := w.isHEAD()
	is11 := req.ProtoAtLeast(1, 1)
	allowed := bodyAllowedForStatus(code)

	var exclude map[string]bool
	drop := func(k string) {
		if _, ok := h[k]; !ok {
			return
		}
		if exclude == nil {
			exclude = make(map[string]bool)
		}
		exclude[k] = true
	}
	var extra []string // lines to add, each with its CRLF

	hasTrailers := false
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			drop(k) // a trailer, set early
			hasTrailers = true
		}
	}
	for _, v := range h["Trailer"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				hasTrailers = true
				w.trailers = append(w.trailers, http.CanonicalHeaderKey(f))
			}
		}
	}

	te := h.Get("Transfer-Encoding")
	hasTE := te != ""

	if auto && !hasTrailers && !hasTE && allowed && w.length < 0 && (!isHEAD || len(w.held) > 0) {
		w.length = int64(len(w.held)) // written below
	}
	hasCL := w.length >= 0

	wants10KeepAlive := !is11 && httpguts.HeaderValuesContainsToken(req.Header["Connection"], "keep-alive")
	if wants10KeepAlive && (isHEAD || hasCL || !allowed) {
		if _, set := h["Connection"]; !set {
			extra = append(extra, "Connection: keep-alive\r\n")
		}
	} else if !is11 || req.Close {
		w.closeAfter = true
	}
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") || w.c.s.shutting.Load() {
		w.closeAfter = true
	}

	if rb := w.rb; rb != nil && !w.closeAfter && !w.fullDuplex {
		// As net/http: a client that sends its whole request before it
		// reads could deadlock with a response written over its unread
		// body, so that body is read (and dropped) first, or the
		// connection closed after the response.
		if !rb.settle() {
			w.closeAfter = true
		}
	}

	if allowed {
		_, typed := h["Content-Type"]
		if !typed && !hasTE && h.Get("Content-Encoding") == "" {
			if sniff := w.bodyStart(first); len(sniff) > 0 {
				extra = append(extra, "Content-Type: "+http.DetectContentType(sniff)+"\r\n")
			}
		}
	} else {
		drop("Content-Length")
		drop("Transfer-Encoding")
		if code == http.StatusNotModified {
			drop("Content-Type")
		}
	}
	if _, dated := h["Date"]; !dated {
		extra = append(extra, dateLine())
	}
	if hasCL && hasTE && te != "identity" {
		w.c.s.logger().Warn("both Transfer-Encoding and Content-Length from the handler; Content-Length ignored", "transfer_encoding", te)
		drop("Content-Length")
		w.length, hasCL = -1, false
	}
	if hasCL && allowed && !w.atWriteHeader {
		// The head goes out after WriteHeader: a handler that kept the
		// header map may have changed its Content-Length since. The body
		// is framed by the length taken at WriteHeader (or settled just
		// now), so that is the one sent.
		drop("Content-Length")
		extra = append(extra, "Content-Length: "+strconv.FormatInt(w.length, 10)+"\r\n")
	}

	switch {
	case isHEAD || !allowed || code == http.StatusNoContent:
		drop("Transfer-Encoding")
	case hasCL:
		drop("Transfer-Encoding")
	case is11:
		drop("Transfer-Encoding")
		if hasTE && te == "identity" {
			w.closeAfter = true
		} else {
			w.chunked = true
			extra = append(extra, "Transfer-Encoding: chunked\r\n")
		}
	default:
		// HTTP/1.0 without a length: the body ends with the connection.
		w.closeAfter = true
		drop("Transfer-Encoding")
	}
	if w.chunked {
		drop("Content-Length")
	}
	if w.closeAfter && !httpguts.HeaderValuesContainsToken(h["Connection"], "close") && !isProtocolSwitch(code, h) {
		drop("Connection")
		if is11 {
			extra = append(extra, "Connection: close\r\n")
		}
	}

	bw := w.writer()
	_, _ = bw.WriteString(statusLine(code, is11))
	writeFields(bw, h, exclude)
	for _, l := range extra {
		_, _ = bw.WriteString(l)
	}
	_, _ = bw.WriteString("\r\n")
}

// sniffLen is how much of a body http.DetectContentType looks at.
const sniffLen = 512

// bodyStart is the start of the body, for sniffing: what was held back,
// then the write that made the head go out. The latter is copied into the
// held buffer's spare room, past its length, so nothing is allocated.
func (w *response) bodyStart(first []byte) []byte {
	held := w.held
	if len(held) == 0 {
		return first
	}
	if n := min(len(first), sniffLen-len(held)); n > 0 {
		return append(held, first[:n]...)
	}
	return held
}

// writeTrailers writes the trailers the handler declared in its Trailer
// header, and those it set with http.TrailerPrefix, with their values as
// they are now.
func (w *response) writeTrailers(bw *bufio.Writer) {
	var t http.Header
	add := func(k string, vv []string) {
		if len(vv) == 0 || !httpguts.ValidTrailerHeader(k) {
			return
		}
		if t == nil {
			t = make(http.Header)
		}
		t[k] = vv
	}
	for _, k := range w.trailers {
		add(k, w.header[k])
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			add(http.CanonicalHeaderKey(name), vv)
		}
	}
	_ = t.Write(bw)
}

// bodyAllowedForStatus reports whether a response with this status may
// have a body (RFC 9110 §6.4.1).
func bodyAllowedForStatus(code int) bool {
	switch {
	case code >= 100 && code <= 199:
		return false
	case code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	return true
}

func isProtocolSwitch(code int, h http.Header) bool {
	return code == http.StatusSwitchingProtocols && httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
}

var statusLines11, statusLines10 [600]string

func init() {
	for code := 100; code < 600; code++ {
		text := http.StatusText(code)
		if text == "" {
			continue
		}
		s := strconv.Itoa(code) + " " + text + "\r\n"
		statusLines11[code] = "HTTP/1.1 " + s
		statusLines10[code] = "HTTP/1.0 " + s
	}
}

// statusLine is the response's first line, as net/http writes it.
func statusLine(code int, is11 bool) string {
	if code < 600 {
		if is11 && statusLines11[code] != "" {
			return statusLines11[code]
		}
		if !is11 && statusLines10[code] != "" {
			return statusLines10[code]
		}
	}
	proto := "HTTP/1.0 "
	if is11 {
		proto = "HTTP/1.1 "
	}
	c := strconv.Itoa(code)
	return proto + c + " status code " + c + "\r\n"
}

// dateLine is the Date header line for now, made once a second.
func dateLine() string {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.line
	}
	d := &cachedDate{sec: sec, line: "Date: " + now.UTC().Format(http.TimeFormat) + "\r\n"}
	dateCache.Store(d)
	return d.line
}

type cachedDate struct {
	sec  int64
	line string
}

var dateCache atomic.Pointer[cachedDate]

// writeFields writes h's fields but those in exclude as net/http's
// Header.WriteSubset does (a name it would refuse is dropped, CR and LF in
// a value become spaces, values are trimmed), in the map's order rather
// than sorted: the order of fields of different names carries no meaning
// (RFC 9110 §5.3), and the sort was a tenth of writing a head.
func writeFields(bw *bufio.Writer, h http.Header, exclude map[string]bool) {
	for k, vv := range h {
		if exclude[k] || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			v = textproto.TrimString(v)
			if strings.ContainsAny(v, "\r\n") {
				for i := 0; i < len(v); i++ {
					c := v[i]
					if c == '\r' || c == '\n' {
						c = ' '
					}
					_ = bw.WriteByte(c)
				}
			} else {
				_, _ = bw.WriteString(v)
			}
			_, _ = bw.WriteString("\r\n")
		}
	}
}
