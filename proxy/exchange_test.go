package proxy

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// afterFuncCtx is a request context that can run a function when canceled,
// as front's can, and counts the registrations. Like front's, it is no
// context.WithCancel underneath (Value finds no cancelCtx), which
// context.WithCancel would otherwise join directly.
type afterFuncCtx struct {
	context.Context
	registered int
}

func (c *afterFuncCtx) Value(any) any { return nil }

func (c *afterFuncCtx) AfterFunc(f func()) func() bool {
	c.registered++
	return context.AfterFunc(c.Context, f)
}

// A context derived from the exchange (net/http's Transport derives one per
// request) reaches the client request's AfterFunc, so it needs no goroutine
// of its own to follow the client's cancellation, and follows it.
func TestExchangePassesAfterFuncThrough(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	client := &afterFuncCtx{Context: parent}
	ex := &exchange{Context: client}
	child, cancel := context.WithCancel(ex)
	defer cancel()
	require.Equal(t, 1, client.registered, "the derived context registers with the client's")
	cancelParent()
	<-child.Done()
	require.ErrorIs(t, child.Err(), context.Canceled)
}
