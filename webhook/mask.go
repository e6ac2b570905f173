package webhook

import (
	"net/url"
	"regexp"
	"strings"
)

// MaskURL shows a hook URL to operators without what may be a credential
// (Discord and Slack put theirs in the path): scheme://host/…, the path,
// query, fragment and user info dropped. A URL with nothing after the host
// keeps its "/"; text that is not an absolute URL becomes "…".
func MaskURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "…"
	}
	masked := u.Scheme + "://" + u.Host + "/"
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.ForceQuery {
		masked += "…"
	}
	return masked
}

// urlInText finds absolute URLs inside free text such as an error message.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// MaskURLsIn masks every absolute URL in text as MaskURL does.
func MaskURLsIn(text string) string {
	if !strings.Contains(text, "://") {
		return text
	}
	return urlInText.ReplaceAllStringFunc(text, MaskURL)
}
