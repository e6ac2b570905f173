package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/stream"
)

// okUpstream is an upstream that accepts connections, so /readyz is ready.
func okUpstream(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	return up.URL
}

// adminRequest is one request to the admin listener; Host defaults to the
// listener's address.
type adminRequest struct {
	method, path, host, body string
	header                   map[string]string
}

func (r *running) adminDo(t *testing.T, req adminRequest) (int, http.Header, string) {
	t.Helper()
	if req.method == "" {
		req.method = http.MethodGet
	}
	hr, err := http.NewRequest(req.method, r.adminURL()+req.path, strings.NewReader(req.body))
	require.NoError(t, err)
	if req.host != "" {
		hr.Host = req.host
	}
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

func TestAdminListenerRequiresTheToken(t *testing.T) {
	r := start(t, testConfig(t, okUpstream(t)))
	token := r.adminToken(t)
	bearer := map[string]string{"Authorization": "Bearer " + token}
	jsonBearer := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	tests := []struct {
		name   string
		req    adminRequest
		status int
	}{
		{"healthz is public", adminRequest{path: "/healthz"}, http.StatusOK},
		{"readyz is public", adminRequest{path: "/readyz"}, http.StatusOK},
		{"HEAD healthz is public", adminRequest{method: http.MethodHead, path: "/healthz"}, http.StatusOK},
		{"metrics need the token", adminRequest{path: "/metrics"}, http.StatusUnauthorized},
		{"metrics with the token", adminRequest{path: "/metrics", header: bearer}, http.StatusOK},
		{"hooks need the token", adminRequest{path: "/hooks"}, http.StatusUnauthorized},
		{"deliveries need the token", adminRequest{path: "/deliveries"}, http.StatusUnauthorized},
		{"a wrong token", adminRequest{path: "/hooks", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("0", len(token))}}, http.StatusUnauthorized},
		{"a prefix of the token", adminRequest{path: "/hooks", header: map[string]string{"Authorization": "Bearer " + token[:len(token)-1]}}, http.StatusUnauthorized},
		{"another scheme", adminRequest{path: "/hooks", header: map[string]string{"Authorization": "Basic " + token}}, http.StatusUnauthorized},
		{"the token alone", adminRequest{path: "/hooks", header: map[string]string{"Authorization": token}}, http.StatusUnauthorized},
		{"the token", adminRequest{path: "/hooks", header: bearer}, http.StatusOK},
		{"the scheme in any case", adminRequest{path: "/hooks", header: map[string]string{"Authorization": "bearer " + token}}, http.StatusOK},
		{"unknown paths need the token too", adminRequest{path: "/debug/pprof/"}, http.StatusUnauthorized},
		{"a POST without the token", adminRequest{method: http.MethodPost, path: "/deliveries", body: `{"webhookId":"nohook"}`,
			header: map[string]string{"Content-Type": "application/json"}}, http.StatusUnauthorized},
		{"a POST to a public path", adminRequest{method: http.MethodPost, path: "/healthz", body: `{}`,
			header: map[string]string{"Content-Type": "application/json"}}, http.StatusUnauthorized},
		{"a text/plain POST", adminRequest{method: http.MethodPost, path: "/deliveries", body: `{"webhookId":"nohook"}`,
			header: map[string]string{"Authorization": "Bearer " + token, "Content-Type": "text/plain"}}, http.StatusUnsupportedMediaType},
		{"a form POST", adminRequest{method: http.MethodPost, path: "/deliveries", body: `webhookId=nohook`,
			header: map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/x-www-form-urlencoded"}}, http.StatusUnsupportedMediaType},
		{"a POST without a type", adminRequest{method: http.MethodPost, path: "/deliveries", body: `{"webhookId":"nohook"}`, header: bearer},
			http.StatusUnsupportedMediaType},
		{"a JSON POST", adminRequest{method: http.MethodPost, path: "/deliveries", body: `{"webhookId":"nohook"}`, header: jsonBearer}, http.StatusOK},
		{"a JSON POST with a charset", adminRequest{method: http.MethodPost, path: "/deliveries", body: `{"webhookId":"nohook"}`,
			header: map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json; charset=utf-8"}}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, body := r.adminDo(t, tt.req)
			assert.Equal(t, tt.status, status, "%s", body)
			if status == http.StatusUnauthorized {
				assert.Equal(t, `Bearer realm="oceanhooks admin"`, header.Get("WWW-Authenticate"))
				assert.Contains(t, body, "admin token")
			}
			if status == http.StatusUnsupportedMediaType {
				assert.Contains(t, body, "application/json")
			}
		})
	}
	assert.Equal(t, 1, strings.Count(r.logs.String(), token), "the token is logged once, when it is generated:\n%s", r.logs)
}

func TestAdminMetricsPublic(t *testing.T) {
	cfg := testConfig(t, okUpstream(t))
	cfg.Admin.MetricsPublic = true
	r := start(t, cfg)
	status, _, body := r.adminDo(t, adminRequest{path: "/metrics"})
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "oceanhooks_queue_ready")
	status, _, _ = r.adminDo(t, adminRequest{path: "/hooks"})
	assert.Equal(t, http.StatusUnauthorized, status, "only /metrics becomes public")
	status, _, _ = r.adminDo(t, adminRequest{path: "/deliveries"})
	assert.Equal(t, http.StatusUnauthorized, status)
}

// TestAdminListenerRefusesForeignHosts: a web page whose name was rebound to
// the admin listener's address sends its own name as Host and is refused,
// even with the token.
func TestAdminListenerRefusesForeignHosts(t *testing.T) {
	cfg := testConfig(t, okUpstream(t))
	cfg.Admin.AllowedHosts = []string{"oceanhooks", "Prom.Internal:9999"}
	r := start(t, cfg)
	_, port, err := net.SplitHostPort(r.AdminAddr().String())
	require.NoError(t, err)
	bearer := map[string]string{"Authorization": "Bearer " + r.adminToken(t)}
	tests := []struct {
		host   string
		status int
	}{
		{"127.0.0.1:" + port, http.StatusOK},
		{"localhost:" + port, http.StatusOK},
		{"LOCALHOST.:" + port, http.StatusOK},
		{"evil.example:" + port, http.StatusMisdirectedRequest},
		{"evil.example", http.StatusMisdirectedRequest},
		{"127.0.0.1:1" + port, http.StatusMisdirectedRequest},
		{"127.0.0.1", http.StatusMisdirectedRequest},
		{"10.0.0.1:" + port, http.StatusMisdirectedRequest},
		{"localhost.evil.example:" + port, http.StatusMisdirectedRequest},
		{"oceanhooks:" + port, http.StatusOK},
		{"oceanhooks:8080", http.StatusOK},
		{"oceanhooks", http.StatusOK},
		{"prom.internal:9999", http.StatusOK},
		{"prom.internal:" + port, http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			for _, path := range []string{"/hooks", "/healthz"} {
				status, _, body := r.adminDo(t, adminRequest{path: path, host: tt.host, header: bearer})
				assert.Equal(t, tt.status, status, "%s: %s", path, body)
				if status == http.StatusMisdirectedRequest {
					assert.Contains(t, body, "admin.allowedHosts")
				}
			}
		})
	}
}

func TestAdminListenerRefusesCrossOriginRequests(t *testing.T) {
	r := start(t, testConfig(t, okUpstream(t)))
	token := r.adminToken(t)
	tests := []struct {
		name, origin string
		status       int
	}{
		{"a foreign page", "http://evil.example", http.StatusForbidden},
		{"a foreign page on the same port", "http://evil.example:" + strconv.Itoa(r.AdminAddr().(*net.TCPAddr).Port), http.StatusForbidden},
		{"an opaque origin", "null", http.StatusForbidden},
		{"https on the same host", "https://" + r.AdminAddr().String(), http.StatusForbidden},
		{"the listener itself", "http://" + r.AdminAddr().String(), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := r.adminDo(t, adminRequest{method: http.MethodPost, path: "/deliveries", body: `{"webhookId":"nohook"}`,
				header: map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json", "Origin": tt.origin}})
			assert.Equal(t, tt.status, status, "%s", body)
		})
	}
}

// hexToken is what a generated token looks like.
var hexToken = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestAdminTokenGeneratedAndShownOnce: the first start writes a random
// token into the data dir with mode 0600 and logs it once; a later start
// uses the same token and does not log it.
func TestAdminTokenGeneratedAndShownOnce(t *testing.T) {
	cfg := testConfig(t, okUpstream(t))
	first := start(t, cfg)
	path := filepath.Join(cfg.DataDir, config.AdminTokenFileName)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	token := first.adminToken(t)
	assert.Regexp(t, hexToken, token)
	status, _ := first.adminGet(t, "/hooks")
	assert.Equal(t, http.StatusOK, status)
	require.NoError(t, first.stop(t))
	logs := first.logs.String()
	assert.Equal(t, 1, strings.Count(logs, token), "%s", logs)
	assert.Contains(t, logs, "generated the admin token")
	assert.Contains(t, logs, path)

	second := start(t, cfg)
	assert.Equal(t, token, second.adminToken(t), "the token survives a restart")
	status, _ = second.adminGet(t, "/hooks")
	assert.Equal(t, http.StatusOK, status)
	require.NoError(t, second.stop(t))
	assert.NotContains(t, second.logs.String(), token)
	assert.NotContains(t, second.logs.String(), "generated the admin token")

	other := start(t, testConfig(t, okUpstream(t)))
	assert.NotEqual(t, token, other.adminToken(t), "every data dir gets its own random token")
}

func TestAdminTokenFile(t *testing.T) {
	writeToken := func(t *testing.T, content string, mode os.FileMode) string {
		p := filepath.Join(t.TempDir(), "admin-token")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	good := strings.Repeat("k", 40)

	t.Run("the file's token is required", func(t *testing.T) {
		cfg := testConfig(t, okUpstream(t))
		cfg.Admin.TokenFile = writeToken(t, "  "+good+"\n", 0o400)
		r := start(t, cfg)
		assert.Equal(t, good, r.adminToken(t))
		status, _ := r.adminGet(t, "/hooks")
		assert.Equal(t, http.StatusOK, status)
		_, err := os.Stat(filepath.Join(cfg.DataDir, config.AdminTokenFileName))
		assert.ErrorIs(t, err, os.ErrNotExist, "no token is generated when admin.tokenFile is set")
		require.NoError(t, r.stop(t))
		assert.NotContains(t, r.logs.String(), good, "a token from admin.tokenFile is never logged")
	})

	refused := []struct {
		name    string
		path    func(t *testing.T) string
		message string
	}{
		{"readable by others", func(t *testing.T) string { return writeToken(t, good, 0o644) }, "open to group or others (mode 0644)"},
		{"readable by the group", func(t *testing.T) string { return writeToken(t, good, 0o640) }, "chmod 600"},
		{"too short", func(t *testing.T) string { return writeToken(t, "short", 0o600) }, "at least 32 characters"},
		{"two lines", func(t *testing.T) string { return writeToken(t, good+"\n"+good, 0o600) }, "visible ASCII characters only, on one line"},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "no such file"},
		{"a directory", func(t *testing.T) string { return t.TempDir() }, "not a regular file"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, okUpstream(t))
			cfg.Admin.TokenFile = tt.path(t)
			_, err := New(cfg, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.message)
			assert.Contains(t, err.Error(), cfg.Admin.TokenFile)
			assert.NotContains(t, err.Error(), good, "the error never shows the token")
		})
	}

	t.Run("an open token file in the data dir", func(t *testing.T) {
		cfg := testConfig(t, okUpstream(t))
		p := filepath.Join(cfg.DataDir, config.AdminTokenFileName)
		require.NoError(t, os.WriteFile(p, []byte(good), 0o600))
		require.NoError(t, os.Chmod(p, 0o604))
		_, err := New(cfg, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "open to group or others")
	})
}

// TestAdminOperatorRoutesAcrossShutdown drives operator requests at the
// admin handler while the server shuts down and after the store closed:
// each is answered (200 while the store is open, then 503), never with a
// store error or a panic.
func TestAdminOperatorRoutesAcrossShutdown(t *testing.T) {
	cfg := testConfig(t, okUpstream(t))
	cfg.ShutdownGrace = config.Duration(50 * time.Millisecond)
	r := start(t, cfg)
	token := r.adminToken(t)
	handler := r.admin.Handler
	serve := func(method, path, body string) (status int, text string, panicked any) {
		defer func() { panicked = recover() }()
		req := httptest.NewRequest(method, "http://"+r.AdminAddr().String()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String(), nil
	}
	calls := []struct{ method, path, body string }{
		{http.MethodGet, "/hooks", ""},
		{http.MethodGet, "/deliveries", ""},
		{http.MethodPost, "/deliveries", `{"webhookId":"nohook"}`},
	}
	for _, c := range calls {
		status, body, p := serve(c.method, c.path, c.body)
		require.Nil(t, p)
		require.Equal(t, http.StatusOK, status, "%s %s before shutdown: %s", c.method, c.path, body)
	}

	var wg sync.WaitGroup
	ctx, stopDriving := context.WithCancel(context.Background())
	type answer struct {
		call   string
		status int
		body   string
		panic  any
	}
	var mu sync.Mutex
	var unexpected []answer
	for _, c := range calls {
		wg.Go(func() {
			for ctx.Err() == nil {
				status, body, p := serve(c.method, c.path, c.body)
				if p != nil || (status != http.StatusOK && status != http.StatusServiceUnavailable) {
					mu.Lock()
					unexpected = append(unexpected, answer{c.method + " " + c.path, status, body, p})
					mu.Unlock()
				}
			}
		})
	}
	require.NoError(t, r.stop(t))
	stopDriving()
	wg.Wait()
	assert.Empty(t, unexpected, "answers across shutdown")
	require.True(t, r.store.(*badgerStore).db.IsClosed())

	for _, c := range calls {
		status, body, p := serve(c.method, c.path, c.body)
		require.Nil(t, p, "%s %s after the store closed", c.method, c.path)
		assert.Equal(t, http.StatusServiceUnavailable, status, "%s %s after the store closed: %s", c.method, c.path, body)
		assert.Contains(t, body, "shutting down")
	}
	assert.NotContains(t, r.logs.String(), "level=ERROR", "no store errors")
}

// TestStreamStatusShowsBehind: /readyz's stream part says when the stream
// is connected but not reading (held events wait then), and only then.
func TestStreamStatusShowsBehind(t *testing.T) {
	at := time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)
	assert.Equal(t, true, streamStatus(stream.Health{Connected: true, Behind: true, Since: at})["behind"])
	assert.NotContains(t, streamStatus(stream.Health{Connected: true, Since: at}), "behind")
	down := streamStatus(stream.Health{Connected: false, LastError: "connection refused", Since: at})
	assert.NotContains(t, down, "behind")
	assert.Equal(t, "connection refused", down["error"])
}
