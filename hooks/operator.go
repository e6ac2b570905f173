package hooks

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/oceanhooks/oceanhooks/ocean"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// maskedSecret stands for a non-empty secret in the operator listing.
const maskedSecret = "****"

// OperatorHandler serves the admin listener's /hooks: GET answers every
// hook (or, with ?userId=, one user's) as JSON in creation order, secrets
// masked and URLs shown as scheme://host/… only (Discord and Slack put a
// credential in the path); POST imports hooks read from Ocean's database
// (see serveImport).
func (s *Store) OperatorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodPost {
			s.serveImport(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD, POST")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		var hooks []Hook
		var err error
		if user := r.URL.Query().Get("userId"); user != "" {
			hooks, err = s.List(user)
		} else {
			hooks, err = s.ListAll()
		}
		if err != nil {
			s.log.Error("hooks: operator listing", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "listing hooks failed"})
			return
		}
		views := make([]hookView, len(hooks))
		for i, h := range hooks {
			views[i] = viewOf(h)
			views[i].URL = webhook.MaskURL(h.URL)
			if views[i].Secret != "" {
				views[i].Secret = maskedSecret
			}
		}
		writeJSON(w, http.StatusOK, views)
	})
}

// ImportRequest is the body of POST /hooks: hooks as Ocean's database holds
// them, to import (Store.Import), or, with DryRun, to check.
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

// MaxImportBytes bounds the body of one POST /hooks.
const MaxImportBytes = 16 << 20

// serveImport answers POST /hooks (ImportRequest → {"results":
// [ImportResult…]}). Every hook is checked before any is stored: a hook
// with event types oceanhooks does not send, or malformed ids, is a 400
// naming it, and nothing is imported.
func (s *Store) serveImport(w http.ResponseWriter, r *http.Request) {
	var req ImportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxImportBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read import: " + err.Error()})
		return
	}
	for _, h := range req.Hooks {
		if !ocean.IsID(h.OceanID) || !ocean.IsID(h.UserID) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("hook %q of user %q: ids must be Ocean ids", h.OceanID, h.UserID)})
			return
		}
		if bad := UnsupportedTypes(h.On); len(bad) > 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("hook %s has event types oceanhooks does not send (%s): leave it in Ocean",
				h.OceanID, strings.Join(bad, ", "))})
			return
		}
	}
	results := make([]ImportResult, 0, len(req.Hooks))
	for _, h := range req.Hooks {
		res := ImportResult{OceanID: h.OceanID}
		var err error
		if req.DryRun {
			var found bool
			res.HookID, found, err = s.Imported(h.UserID, h.OceanID)
			res.Outcome = ImportWould
			if found {
				res.Outcome = ImportAlready
			}
		} else {
			var imported bool
			res.HookID, imported, err = s.Import(Hook{UserID: h.UserID, Name: h.Name, On: h.On, URL: h.URL, Secret: h.Secret,
				Active: h.Active, LatestSentAt: h.LatestSentAt, LatestStatus: h.LatestStatus, NativeID: h.OceanID})
			res.Outcome = ImportAlready
			if imported {
				res.Outcome = ImportImported
				s.log.Info("hooks: imported a hook from Ocean's database", "user", h.UserID, "oceanHook", h.OceanID, "hook", res.HookID)
			}
		}
		if err != nil {
			s.log.Error("hooks: operator import", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "import failed at hook " + h.OceanID + "; the hooks before it are stored"})
			return
		}
		results = append(results, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}
