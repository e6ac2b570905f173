package oceantest

import (
	"regexp"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// misskeyID is Ajv's misskey:id format of Ocean's parameter schemas.
var misskeyID = regexp.MustCompile(`^[a-zA-Z0-9]+$`)

// apiWebhooksUpdate answers Ocean's own i/webhooks/update: the webhookId
// parameter checked as Ocean's schema does, then NO_SUCH_WEBHOOK, since the
// hooks of a sidecar's users live in the sidecar, never in Ocean.
func (s *Server) apiWebhooksUpdate(r *request) reply {
	v, present := r.params["webhookId"]
	id, isString := v.(string)
	switch {
	case !present:
		return fail(invalidParam("#/required", "must have required property 'webhookId'"))
	case !isString:
		return fail(invalidParam("#/properties/webhookId/type", "must be string"))
	case !misskeyID.MatchString(id):
		return fail(invalidParam("#/properties/webhookId/format", `must match format "misskey:id"`))
	}
	return fail(ocean.ErrNoSuchWebhookUpdate)
}

// invalidParam is Ocean's INVALID_PARAM with Ajv's first error.
func invalidParam(param, reason string) *ocean.Error {
	return ocean.ErrInvalidParam.With(map[string]any{"param": param, "reason": reason})
}
