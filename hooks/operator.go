package hooks

import (
	"net/http"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// maskedSecret stands for a non-empty secret in the operator listing.
const maskedSecret = "****"

// OperatorHandler serves the admin listener's read-only hook listing: GET
// answers every hook (or, with ?userId=, one user's) as JSON in creation
// order, secrets masked and URLs shown as scheme://host/… only (Discord and
// Slack put a credential in the path).
func (s *Store) OperatorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
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
