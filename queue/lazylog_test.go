package queue

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLazyLoggerWritesWhatWithWould: a lazy logger's lines are those of
// slog's With, attributes added later and groups included, and building one
// for an attempt that logs nothing allocates less than With does.
func TestLazyLoggerWritesWhatWithWould(t *testing.T) {
	var eager, lazy bytes.Buffer
	opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	for _, tc := range []struct {
		name string
		h    func(*bytes.Buffer) slog.Handler
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, opts) }},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, opts) }},
	} {
		eager.Reset()
		lazy.Reset()
		base := slog.New(tc.h(&eager)).With("component", "queue")
		e := base.With("delivery", "d1", "hook", "h1").With("type", "note")
		e.Info("delivered", "status", 200)
		e.WithGroup("g").Warn("grouped", "k", "v")

		lbase := slog.New(tc.h(&lazy)).With("component", "queue")
		l := lazyLogger(lbase, slog.String("delivery", "d1"), slog.String("hook", "h1")).With("type", "note")
		l.Info("delivered", "status", 200)
		l.WithGroup("g").Warn("grouped", "k", "v")
		assert.Equal(t, eager.String(), lazy.String(), tc.name)
		assert.Contains(t, lazy.String(), "delivery", tc.name)
	}

	quiet := slog.New(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError}))
	withAllocs := testing.AllocsPerRun(100, func() {
		quiet.With("delivery", "d1", "hook", "h1").With("type", "note").Info("x")
	})
	lazyAllocs := testing.AllocsPerRun(100, func() {
		lazyLogger(quiet, slog.String("delivery", "d1"), slog.String("hook", "h1")).With("type", "note").Info("x")
	})
	assert.Less(t, lazyAllocs, withAllocs)
}
