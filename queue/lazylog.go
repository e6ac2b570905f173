package queue

import (
	"context"
	"log/slog"
	"slices"
)

// lazyLogger returns l with attrs added the way l.With would add them, but
// rendered only when a record is logged. slog's own handlers format the
// attributes of With at once, which an attempt would pay for every delivery
// although it logs only when something goes wrong.
func lazyLogger(l *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	return slog.New(&lazyAttrs{h: l.Handler(), attrs: attrs})
}

// lazyAttrs is a handler that puts its attributes in front of each record's
// own when the record is handled.
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (a *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return a.h.Enabled(ctx, level)
}

func (a *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(a.attrs...)
	r.Attrs(func(attr slog.Attr) bool {
		out.AddAttrs(attr)
		return true
	})
	return a.h.Handle(ctx, out)
}

func (a *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lazyAttrs{h: a.h, attrs: append(slices.Clip(a.attrs), attrs...)}
}

// WithGroup renders the attributes so far outside the group, as With then
// WithGroup would.
func (a *lazyAttrs) WithGroup(name string) slog.Handler {
	return a.h.WithAttrs(a.attrs).WithGroup(name)
}
