package hooks_test

import (
	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/matchers"
	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/queue"
)

// The store is what the matchers and the queue read; the queue and Ocean's
// client are what the API needs.
var (
	_ matchers.Subscriptions = (*hooks.Store)(nil)
	_ queue.Hooks            = (*hooks.Store)(nil)
	_ hooks.Deliveries       = (*queue.Queue)(nil)
	_ hooks.Authenticator    = (*ocean.Client)(nil)
	_ matchers.Ocean         = (*ocean.Client)(nil)
)
