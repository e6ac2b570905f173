package hooks

import "time"

// ImportRequest is the body of the admin listener's POST /hooks (package
// admin): hooks as Ocean's database holds them, to import (Store.Import), or,
// with DryRun, to check.
type ImportRequest struct {
	DryRun bool         `json:"dryRun"`
	Hooks  []ImportHook `json:"hooks"`
}

// ImportHook is one hook of Ocean's webhook table.
type ImportHook struct {
	OceanID      string     `json:"oceanId"`
	UserID       string     `json:"userId"`
	Name         string     `json:"name"`
	On           []string   `json:"on"`
	URL          string     `json:"url"`
	Secret       string     `json:"secret"`
	Active       bool       `json:"active"`
	LatestSentAt *time.Time `json:"latestSentAt"`
	LatestStatus *int       `json:"latestStatus"`
}

// ImportResult is what became of one ImportHook, in request order.
type ImportResult struct {
	OceanID string `json:"oceanId"`
	HookID  string `json:"hookId,omitempty"` // empty for one that would be imported
	Outcome string `json:"outcome"`          // one of the Import… outcomes
}

// Outcomes of an ImportHook.
const (
	ImportImported = "imported"
	ImportAlready  = "already imported"
	ImportWould    = "would import"
)
