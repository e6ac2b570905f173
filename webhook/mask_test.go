package webhook

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMaskURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"discord token in the path", "https://discord.com/api/webhooks/123/s3cr3t-token", "https://discord.com/…"},
		{"slack token in the path", "https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/…"},
		{"query", "https://receiver.example/?key=s3cr3t", "https://receiver.example/…"},
		{"fragment", "https://receiver.example/#s3cr3t", "https://receiver.example/…"},
		{"user info", "https://user:s3cr3t@receiver.example", "https://receiver.example/"},
		{"port kept", "http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/…"},
		{"bare host", "https://receiver.example", "https://receiver.example/"},
		{"root path", "https://receiver.example/", "https://receiver.example/"},
		{"empty query mark", "https://receiver.example/?", "https://receiver.example/…"},
		{"not a URL", "receiver.example/s3cr3t", "…"},
		{"unparsable", "https://receiver.example/%zz/s3cr3t", "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MaskURL(tt.in)
			assert.Equal(t, tt.want, got)
			assert.NotContains(t, got, "s3cr3t")
		})
	}
}

func TestMaskURLsIn(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no URL", "HTTP 500 Internal Server Error", "HTTP 500 Internal Server Error"},
		{"quoted URL in an error", `Post "https://discord.com/api/webhooks/1/s3cr3t": EOF`, `Post "https://discord.com/…": EOF`},
		{"several", "a https://a.example/x?s3cr3t b http://b.example c", "a https://a.example/… b http://b.example/ c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, MaskURLsIn(tt.in))
		})
	}
}
