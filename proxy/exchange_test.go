package proxy

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeSwapper is a ResponseWriter's header that can be swapped, or refuses
// to be (after WriteHeader).
type fakeSwapper struct {
	h       http.Header
	refused bool
}

func (f *fakeSwapper) SwapHeader(h http.Header) http.Header {
	if f.refused {
		return nil
	}
	old := f.h
	f.h = h
	return old
}

// moveHeader by swap: the upstream's fields become the client response's,
// a field the response had that the upstream did not send stays, the
// upstream's wins on a clash, and res keeps an empty map but for an event
// stream's Content-Type (ReverseProxy reads it to flush at once).
func TestSwapHeader(t *testing.T) {
	sw := &fakeSwapper{h: http.Header{"X-Own": {"kept"}, "X-Both": {"ours"}}}
	res := &http.Response{Header: http.Header{
		"X-Both":        {"upstream"},
		"Content-Type":  {"text/event-stream"},
		"Cache-Control": {"no-cache"},
	}}
	require.True(t, swapHeader(sw, res))
	require.Equal(t, http.Header{"X-Own": {"kept"}, "X-Both": {"upstream"}, "Cache-Control": {"no-cache"}}, sw.h)
	require.Equal(t, http.Header{"Content-Type": {"text/event-stream"}}, res.Header)

	refused := &fakeSwapper{h: http.Header{}, refused: true}
	res = &http.Response{Header: http.Header{"Content-Type": {"text/event-stream"}, "X-A": {"1"}}}
	require.False(t, swapHeader(refused, res))
	require.Equal(t, http.Header{"Content-Type": {"text/event-stream"}, "X-A": {"1"}}, res.Header, "a refused swap leaves res as it was")
}
