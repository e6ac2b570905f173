package queue

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// OperatorHandler serves the operators' view of deliveries on the admin
// listener, for any hook:
//
//	GET  ?webhookId=&limit=&untilId=          → 200 [webhook.Delivery…] newest first (no webhookId: all hooks)
//	POST {"webhookId":…, "deliveryId":…}      → 200 {"redelivered": n} (0 or 1)
//	POST {"webhookId":…}                      → 200 {"started": true}: every dead letter of the hook
//	                                            is redelivered in the background (see jobs.go)
//
// Errors are {"error": "<message>"} with 400, 404 (no such delivery) or 405.
// Any URL inside an attempt's error or response text is shown as
// scheme://host/… only: a hook URL's path may be a credential.
func (q *Queue) OperatorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			v := r.URL.Query()
			limit := 0
			if s := v.Get("limit"); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 || n > MaxListLimit {
					writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1 to 100"})
					return
				}
				limit = n
			}
			ds, err := q.List(r.Context(), v.Get("webhookId"), limit, v.Get("untilId"))
			if err != nil {
				q.opts.Logger.Error("operator list", "err", err)
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "listing failed"})
				return
			}
			writeJSON(w, http.StatusOK, maskAttempts(ds))
		case http.MethodPost:
			var req struct {
				WebhookID  string `json:"webhookId"`
				DeliveryID string `json:"deliveryId"`
			}
			if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.WebhookID == "" {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be {\"webhookId\", \"deliveryId\"?}"})
				return
			}
			n, err := q.Redeliver(r.Context(), req.WebhookID, req.DeliveryID)
			switch {
			case errors.Is(err, webhook.ErrNoSuchDelivery):
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such delivery"})
			case err != nil:
				q.opts.Logger.Error("operator redeliver", "err", err)
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "redelivery failed"})
			case req.DeliveryID == "":
				writeJSON(w, http.StatusOK, map[string]bool{"started": true})
			default:
				writeJSON(w, http.StatusOK, map[string]int{"redelivered": n})
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		}
	})
}

// maskAttempts masks the URLs in ds's attempt texts, in place.
func maskAttempts(ds []webhook.Delivery) []webhook.Delivery {
	for i := range ds {
		for j := range ds[i].Attempts {
			a := &ds[i].Attempts[j]
			a.Error = webhook.MaskURLsIn(a.Error)
			a.Response = webhook.MaskURLsIn(a.Response)
		}
	}
	return ds
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
