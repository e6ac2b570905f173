package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// maskedSecret stands for a non-empty secret in the operator listing.
const maskedSecret = "****"

// hookView is a hook as the operator listing shows it: the fields of Ocean's
// UserWebhook schema, the secret masked and the URL as scheme://host/…
// (Discord and Slack put a credential in the path), then auto-disable's
// bookkeeping.
type hookView struct {
	ID           string   `json:"id"`
	UserID       string   `json:"userId"`
	Name         string   `json:"name"`
	On           []string `json:"on"`
	URL          string   `json:"url"`
	Secret       string   `json:"secret"`
	Active       bool     `json:"active"`
	LatestSentAt *string  `json:"latestSentAt"`
	LatestStatus *int     `json:"latestStatus"`
	FailingSince *string  `json:"failingSince,omitempty"`
	Failures     int      `json:"failures,omitempty"`
	DisabledAt   *string  `json:"disabledAt,omitempty"`
}

// isoMillis writes t as Ocean's API writes dates.
func isoMillis(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05.000Z")
	return &s
}

func viewOf(h hooks.Hook) hookView {
	v := hookView{ID: h.ID, UserID: h.UserID, Name: h.Name, On: h.On, URL: webhook.MaskURL(h.URL),
		Active: h.Active, LatestSentAt: isoMillis(h.LatestSentAt), LatestStatus: h.LatestStatus,
		FailingSince: isoMillis(h.FailingSince), Failures: h.Failures, DisabledAt: isoMillis(h.DisabledAt)}
	if v.On == nil {
		v.On = []string{}
	}
	if h.Secret != "" {
		v.Secret = maskedSecret
	}
	return v
}

// hooksAPI serves /hooks: GET answers every hook (or, with ?userId=, one
// user's) as JSON in creation order (hookView); POST imports hooks read
// from Ocean's database (see importHooks).
func (a *Admin) hooksAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		a.importHooks(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	var hs []hooks.Hook
	var err error
	if user := r.URL.Query().Get("userId"); user != "" {
		hs, err = a.opts.Hooks.List(user)
	} else {
		hs, err = a.opts.Hooks.ListAll()
	}
	if err != nil {
		a.log.Error("admin: hook listing", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "listing hooks failed"})
		return
	}
	views := make([]hookView, len(hs))
	for i, h := range hs {
		views[i] = viewOf(h)
	}
	writeJSON(w, http.StatusOK, views)
}

// maxImportBytes bounds the body of one POST /hooks.
const maxImportBytes = 16 << 20

// importHooks answers POST /hooks (hooks.ImportRequest → {"results":
// [hooks.ImportResult…]}). Every hook is checked before any is stored: a
// hook with event types oceanhooks does not send, or malformed ids, is a 400
// naming it, and nothing is imported.
func (a *Admin) importHooks(w http.ResponseWriter, r *http.Request) {
	var req hooks.ImportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxImportBytes))
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
		if bad := hooks.UnsupportedTypes(h.On); len(bad) > 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("hook %s has event types oceanhooks does not send (%s): leave it in Ocean",
				h.OceanID, strings.Join(bad, ", "))})
			return
		}
	}
	results := make([]hooks.ImportResult, 0, len(req.Hooks))
	for _, h := range req.Hooks {
		res := hooks.ImportResult{OceanID: h.OceanID}
		var err error
		if req.DryRun {
			var found bool
			res.HookID, found, err = a.opts.Hooks.Imported(h.UserID, h.OceanID)
			res.Outcome = hooks.ImportWould
			if found {
				res.Outcome = hooks.ImportAlready
			}
		} else {
			var imported bool
			res.HookID, imported, err = a.opts.Hooks.Import(hooks.Hook{UserID: h.UserID, Name: h.Name, On: h.On, URL: h.URL, Secret: h.Secret,
				Active: h.Active, LatestSentAt: h.LatestSentAt, LatestStatus: h.LatestStatus, NativeID: h.OceanID})
			res.Outcome = hooks.ImportAlready
			if imported {
				res.Outcome = hooks.ImportImported
				a.log.Info("admin: imported a hook from Ocean's database", "user", h.UserID, "oceanHook", h.OceanID, "hook", res.HookID)
			}
		}
		if err != nil {
			a.log.Error("admin: hook import", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "import failed at hook " + h.OceanID + "; the hooks before it are stored"})
			return
		}
		results = append(results, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}
