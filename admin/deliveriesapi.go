package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// maxListLimit is the most deliveries one listing returns.
const maxListLimit = 100

// deliveriesAPI serves the operators' view of deliveries, for any hook:
//
//	GET  ?webhookId=&limit=&untilId=          → 200 [webhook.Delivery…] newest first (no webhookId: all hooks)
//	POST {"webhookId":…, "deliveryId":…}      → 200 {"redelivered": n} (0 or 1)
//	POST {"webhookId":…}                      → 200 {"started": true}: every dead letter of the hook
//	                                            is redelivered in the background
//
// Errors are {"error": "<message>"} with 400, 404 (no such delivery) or 405.
// Any URL inside an attempt's error or response text is shown as
// scheme://host/… only: a hook URL's path may be a credential.
func (a *Admin) deliveriesAPI(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		v := r.URL.Query()
		limit := 0
		if s := v.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxListLimit {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1 to 100"})
				return
			}
			limit = n
		}
		ds, err := a.opts.Deliveries.List(r.Context(), v.Get("webhookId"), limit, v.Get("untilId"))
		if err != nil {
			a.log.Error("admin: delivery listing", "err", err)
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
		n, err := a.opts.Deliveries.Redeliver(r.Context(), req.WebhookID, req.DeliveryID)
		switch {
		case errors.Is(err, webhook.ErrNoSuchDelivery):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such delivery"})
		case err != nil:
			a.log.Error("admin: redeliver", "err", err)
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
}

// maskAttempts masks the URLs in ds's attempt texts, in place.
func maskAttempts(ds []webhook.Delivery) []webhook.Delivery {
	for i := range ds {
		for j := range ds[i].Attempts {
			at := &ds[i].Attempts[j]
			at.Error = webhook.MaskURLsIn(at.Error)
			at.Response = webhook.MaskURLsIn(at.Response)
		}
	}
	return ds
}
