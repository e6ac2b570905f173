package queue

import (
	"context"
	"time"
)

// trimEvery is how often Run compares the resident set with the budget.
const trimEvery = 100 * time.Millisecond

// keepWithinBudget drops the store's mapped file pages from the resident
// set whenever it is above five eighths of Options.MemoryBudget and those
// pages are an eighth of the budget or more (dropping fewer would gain
// little and cost reads), until ctx ends (see Options.MemoryBudget). The
// margin is for what a compaction maps between two checks.
func (q *Queue) keepWithinBudget(ctx context.Context) {
	budget := q.opts.MemoryBudget
	if budget <= 0 {
		return
	}
	dir := q.db.Opts().Dir
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	every(ctx, trimEvery, func() {
		rss, file, err := residentBytes()
		if err == nil && (rss <= budget*5/8 || file < budget/8) {
			return
		}
		if err == nil {
			_, err = pageOutStore(dir)
		}
		if err != nil {
			q.opts.Logger.Warn("cannot keep the store's mapped files within the memory budget", "err", err)
			stop()
			return
		}
		q.trims.Add(1)
	})
}
