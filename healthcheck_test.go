package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// TestHealthcheck: the command a container's HEALTHCHECK runs succeeds
// against a running server (no token needed) and fails when nothing answers.
func TestHealthcheck(t *testing.T) {
	oc := oceantest.New(t)
	s, _ := startServer(t, oc.URL, nil)
	admin := "http://" + s.AdminAddr().String()

	stdout, _, err := runCLI(t, nil, "healthcheck", "--admin", admin)
	require.NoError(t, err)
	assert.Contains(t, stdout, `"status":"ok"`)
	stdout, _, err = runCLI(t, nil, "healthcheck", "--admin", admin, "--ready")
	require.NoError(t, err)
	assert.Contains(t, stdout, `"status":"ready"`)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	_, _, err = runCLI(t, nil, "healthcheck", "--admin", "http://"+closed)
	assert.ErrorContains(t, err, "healthcheck")

	oc.Close() // Ocean gone: alive, but not ready
	_, _, err = runCLI(t, nil, "healthcheck", "--admin", admin, "--ready")
	assert.ErrorContains(t, err, "503")
}
