package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/server"
)

// runAsMain makes the test binary act as the oceanhooks binary when re-executed
// by a test (a name outside OCEANHOOKS_, which is reserved for settings).
const runAsMain = "GO_TEST_RUN_OCEANHOOKS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// command returns the oceanhooks program (this test binary) with args.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, args...)
	// GORACE: a race-enabled child otherwise sleeps a second before exiting 0.
	cmd.Env = append(withoutSettings(os.Environ()), runAsMain+"=1", "GORACE=atexit_sleep_ms=0")
	return cmd
}

// withoutSettings drops OCEANHOOKS_ variables so that the caller's
// environment cannot change what a test checks.
func withoutSettings(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// cli runs the command line in-process and returns stdout, stderr and the error.
func runCLI(t *testing.T, environ []string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := newApp(&stdout, &stderr, environ).RunContext(context.Background(), append([]string{"oceanhooks"}, args...))
	return stdout.String(), stderr.String(), err
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "oceanhooks.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	return ee.ExitCode()
}

func TestCheckConfigExitCodes(t *testing.T) {
	good := writeConfig(t, "listen: \":4001\"\ndelivery:\n  maxAttempts: 5\n")
	bad := writeConfig(t, "listne: \":4001\"\nupstream: ocean\ndelivery:\n  backoffBase: soon\n")
	tests := []struct {
		name       string
		args       []string
		env        []string
		code       int
		stdout     []string
		stderr     []string
		notStdout  []string
		notStderrs []string
	}{
		{name: "the example", args: []string{"check-config", "config.example.yaml"}, code: 0,
			stdout: []string{"ok: config.example.yaml", "listen :3001 → upstream http://127.0.0.1:3000"}},
		{name: "a good file", args: []string{"check-config", good}, code: 0,
			stdout: []string{"ok: " + good, "listen :4001"}},
		{name: "no file: defaults and env", args: []string{"check-config"}, env: []string{"OCEANHOOKS_LISTEN=:5001"}, code: 0,
			stdout: []string{"ok: (no file", "listen :5001"}},
		{name: "file from OCEANHOOKS_CONFIG", args: []string{"check-config"}, env: []string{"OCEANHOOKS_CONFIG=" + good}, code: 0,
			stdout: []string{"ok: " + good}},
		{name: "every problem listed", args: []string{"check-config", bad}, code: 1,
			stderr: []string{
				"config: 3 problems:",
				"listne: unknown key, did you mean \"listen\"? (" + bad + " line 1)",
				"delivery.backoffBase: invalid duration \"soon\"",
				"upstream: invalid URL \"ocean\"",
			},
			notStdout: []string{"ok"}},
		{name: "env problems too", args: []string{"check-config", good}, env: []string{"OCEANHOOKS_DELIVERY_WORKERS=lots"}, code: 1,
			stderr: []string{"delivery.workers: want an integer, got \"lots\" (env OCEANHOOKS_DELIVERY_WORKERS)"}},
		{name: "missing file", args: []string{"check-config", filepath.Join(t.TempDir(), "nope.yaml")}, code: 1,
			stderr: []string{"read config file"}},
		{name: "too many arguments", args: []string{"check-config", good, good}, code: 1,
			stderr: []string{"at most one FILE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := command(t, tt.args...)
			cmd.Env = append(cmd.Env, tt.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			assert.Equal(t, tt.code, exitCode(t, cmd.Run()), "stderr: %s", stderr.String())
			for _, s := range tt.stdout {
				assert.Contains(t, stdout.String(), s)
			}
			for _, s := range tt.stderr {
				assert.Contains(t, stderr.String(), s)
			}
			for _, s := range tt.notStdout {
				assert.NotContains(t, stdout.String(), s)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	stdout, _, err := runCLI(t, nil, "version")
	require.NoError(t, err)
	assert.Contains(t, stdout, "oceanhooks dev\n")
	assert.Contains(t, stdout, "go: go1.")
	assert.Contains(t, stdout, "module: github.com/oceanhooks/oceanhooks")
}

func TestServeRejectsABadConfigBeforeStarting(t *testing.T) {
	_, _, err := runCLI(t, nil, "serve", "--listen", "nowhere", "--log-level", "loud", "--data-dir", t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listen: invalid address \"nowhere\"")
	assert.Contains(t, err.Error(), "(flag --listen)")
	assert.Contains(t, err.Error(), "log.level: must be debug, info, warn or error, got \"loud\" (flag --log-level)")

	_, _, err = runCLI(t, nil, "serve", "extra")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "serve takes no arguments")
}

func TestServeFlagsBeatEnvAndFile(t *testing.T) {
	file := writeConfig(t, "upstream: http://file:3000\nlisten: \":4001\"\n")
	for _, key := range []string{"listen", "upstream", "publicURL", "dataDir", "adminListen", "admin.tokenFile", "log.level", "log.format"} {
		found := false
		for _, f := range serveFlags {
			found = found || f.key == key
		}
		assert.True(t, found, "a serve flag sets %s", key)
	}
	// The serve command's flags, loaded as serve loads them (without serving).
	env := []string{"OCEANHOOKS_LISTEN=:5001", "OCEANHOOKS_UPSTREAM=http://env:3000"}
	app := newApp(io.Discard, io.Discard, env)
	var got config.Config
	for _, c := range app.Commands {
		if c.Name == "serve" {
			c.Action = func(ctx *cli.Context) error {
				var err error
				got, err = loadConfig(ctx, ctx.String("config"), env)
				return err
			}
		}
	}
	require.NoError(t, app.Run([]string{"oceanhooks", "serve", "--config", file, "--listen", ":6001", "--public-url", "https://ocean.example",
		"--admin-token-file", "/run/secrets/admin"}))
	assert.Equal(t, ":6001", got.Listen, "flag beats env and file")
	assert.Equal(t, "/run/secrets/admin", got.Admin.TokenFile)
	assert.Equal(t, "http://env:3000", got.Upstream, "env beats file")
	assert.Equal(t, "https://ocean.example", got.PublicURL)
}

// writeToken writes an admin token file with mode 0600.
func writeToken(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(p, []byte(token+"\n"), 0o600))
	return p
}

func TestOperatorCommandsNeedTheServer(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	_, _, err := runCLI(t, nil, "hooks", "list", "--admin", dead.URL, "--token-file", writeToken(t, strings.Repeat("t", 64)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is `oceanhooks serve` running")

	_, _, err = runCLI(t, nil, "deliveries", "redeliver")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "webhook")
}

// lockedBuffer collects a child's stderr and lets a test wait for a line.
type lockedBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *lockedBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
}

// find returns the first JSON log record whose msg is msg.
func (b *lockedBuffer) find(msg string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// TestSIGTERMDuringASlowRequest runs the real program: a request in flight
// when SIGTERM arrives still gets the upstream's answer, and the process
// exits 0.
func TestSIGTERMDuringASlowRequest(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			return
		}
		once.Do(func() { close(arrived) })
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"slow":"answer"}`)
	}))
	t.Cleanup(upstream.Close)

	cmd := command(t, "serve", "--upstream", upstream.URL, "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	var gone atomic.Bool
	logs := &lockedBuffer{}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.add(sc.Text())
		}
		err := cmd.Wait()
		gone.Store(true)
		exited <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})

	var addr string
	require.Eventually(t, func() bool {
		if rec := logs.find("proxy listening"); rec != nil {
			addr, _ = rec["addr"].(string)
		}
		return addr != "" || gone.Load()
	}, 60*time.Second, 20*time.Millisecond)
	require.NotEmpty(t, addr, "the server logs its address; logs:\n%s", logs)

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	<-arrived
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return logs.find("shutting down") != nil }, 30*time.Second, 10*time.Millisecond,
		"logs:\n%s", logs)
	close(release)

	res := <-got
	require.NoError(t, res.err)
	assert.Equal(t, http.StatusOK, res.status)
	assert.JSONEq(t, `{"slow":"answer"}`, res.body)
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status; logs:\n%s", logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("the process did not exit; logs:\n%s", logs)
	}
	assert.NotNil(t, logs.find("stopped"))
}

// startServer runs a server in-process for the operator commands; change
// (nil: none) adjusts its config.
func startServer(t *testing.T, upstream string, change func(*config.Config)) (*server.Server, config.Config) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Upstream = upstream
	if change != nil {
		change(&cfg)
	}
	s, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return s, cfg
}

func createHook(t *testing.T, proxyAddr, token, name string) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{"name": name, "url": "https://receiver.example/" + name, "secret": "hush", "on": []string{"note", "follow"}})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "http://"+proxyAddr+"/api/i/webhooks/create", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	var h struct{ ID string }
	require.NoError(t, json.Unmarshal(out, &h))
	return h.ID
}

// TestOperatorCommandsAgainstARunningServer runs every operator command
// against a server on each store backend.
func TestOperatorCommandsAgainstARunningServer(t *testing.T) {
	for _, backend := range []string{config.BackendBadger, config.BackendPostgres} {
		t.Run(backend, func(t *testing.T) {
			testOperatorCommands(t, func(c *config.Config) {
				if backend == config.BackendPostgres {
					url := pgtest.ServerURL(t)
					c.Store.Backend = backend
					c.Store.Postgres.URL = url
					c.Store.Postgres.Schema = pgtest.NewSchema(t, url)
				}
			})
		})
	}
}

func testOperatorCommands(t *testing.T, backend func(*config.Config)) {
	oc := oceantest.New(t)
	s, cfg := startServer(t, oc.URL, backend)
	admin := "http://" + s.AdminAddr().String()
	// The operator commands find the token in the server's data dir.
	env := []string{"OCEANHOOKS_DATA_DIR=" + cfg.DataDir}
	aliceHook := createHook(t, s.Addr().String(), oceantest.TokenAlice, "alices")
	bobHook := createHook(t, s.Addr().String(), oceantest.TokenBob, "bobs")

	t.Run("hooks list", func(t *testing.T) {
		stdout, _, err := runCLI(t, env, "hooks", "list", "--admin", admin)
		require.NoError(t, err)
		assert.Contains(t, stdout, "ID")
		assert.Contains(t, stdout, aliceHook)
		assert.Contains(t, stdout, bobHook)
		assert.Contains(t, stdout, "note,follow")
		assert.Contains(t, stdout, "2 hooks")
		assert.NotContains(t, stdout, "hush")
		assert.Contains(t, stdout, "https://receiver.example/…")
		assert.NotContains(t, stdout, "receiver.example/alices", "hook URLs are shown without their path")
	})
	t.Run("hooks list of one user", func(t *testing.T) {
		stdout, _, err := runCLI(t, env, "hooks", "list", "--admin", s.AdminAddr().String(), "--user", oceantest.BobID)
		require.NoError(t, err)
		assert.Contains(t, stdout, bobHook)
		assert.NotContains(t, stdout, aliceHook)
		assert.Contains(t, stdout, "1 hooks")
	})
	t.Run("hooks list as JSON", func(t *testing.T) {
		stdout, _, err := runCLI(t, env, "hooks", "list", "--admin", admin, "--json")
		require.NoError(t, err)
		var hooks []map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &hooks))
		require.Len(t, hooks, 2)
		assert.NotContains(t, stdout, "hush")
	})
	t.Run("deliveries list", func(t *testing.T) {
		stdout, _, err := runCLI(t, env, "deliveries", "list", "--admin", admin, "--webhook", aliceHook)
		require.NoError(t, err)
		assert.Contains(t, stdout, "0 deliveries")
		stdout, _, err = runCLI(t, env, "deliveries", "list", "--admin", admin, "--webhook", aliceHook, "--json")
		require.NoError(t, err)
		assert.JSONEq(t, `[]`, stdout)
	})
	t.Run("deliveries list refuses a bad limit with the server's reason", func(t *testing.T) {
		_, _, err := runCLI(t, env, "deliveries", "list", "--admin", admin, "--limit", "1000")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "400 Bad Request: limit must be 1 to 100")
	})
	t.Run("redeliver every dead letter", func(t *testing.T) {
		stdout, _, err := runCLI(t, env, "deliveries", "redeliver", "--admin", admin, "--webhook", aliceHook)
		require.NoError(t, err)
		assert.Equal(t, "started redelivering every dead letter of hook "+aliceHook+" in the background\n", stdout)
	})
	t.Run("redeliver an unknown delivery", func(t *testing.T) {
		_, _, err := runCLI(t, env, "deliveries", "redeliver", "--admin", admin, "--webhook", aliceHook, "--delivery", "aaaaaaaaaaaaaaaa")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no such delivery")
	})
}

// TestOperatorCommandsFindTheToken: the operator commands read the admin
// token where the server keeps it (the config's dataDir or admin.tokenFile,
// from a file, the environment or --token-file), send it, and say clearly
// when they cannot.
func TestOperatorCommandsFindTheToken(t *testing.T) {
	oc := oceantest.New(t)
	s, cfg := startServer(t, oc.URL, nil)
	admin := s.AdminAddr().String()
	dataDirToken := filepath.Join(cfg.DataDir, config.AdminTokenFileName)
	fileConfig := writeConfig(t, "dataDir: "+cfg.DataDir+"\nadminListen: \""+admin+"\"\n")

	good := []struct {
		name string
		env  []string
		args []string
	}{
		{"--config names the data dir and the listener", nil, []string{"--config", fileConfig}},
		{"$OCEANHOOKS_CONFIG", []string{"OCEANHOOKS_CONFIG=" + fileConfig}, nil},
		{"--token-file", nil, []string{"--admin", admin, "--token-file", dataDirToken}},
		{"$OCEANHOOKS_ADMIN_TOKEN_FILE", []string{"OCEANHOOKS_ADMIN_TOKEN_FILE=" + dataDirToken}, []string{"--admin", admin}},
		{"$OCEANHOOKS_ADMIN_LISTEN and $OCEANHOOKS_DATA_DIR", []string{"OCEANHOOKS_ADMIN_LISTEN=" + admin, "OCEANHOOKS_DATA_DIR=" + cfg.DataDir}, nil},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := runCLI(t, tt.env, append([]string{"hooks", "list"}, tt.args...)...)
			require.NoError(t, err)
			assert.Contains(t, stdout, "0 hooks")
			stdout, _, err = runCLI(t, tt.env, append([]string{"deliveries", "redeliver", "--webhook", "nohook"}, tt.args...)...)
			require.NoError(t, err)
			assert.Contains(t, stdout, "started redelivering every dead letter of hook nohook")
		})
	}

	wrong := writeToken(t, strings.Repeat("w", 64))
	open := writeToken(t, strings.Repeat("o", 64))
	require.NoError(t, os.Chmod(open, 0o644))
	bad := []struct {
		name string
		env  []string
		args []string
		msg  []string
	}{
		{"no token where the config says", []string{"OCEANHOOKS_DATA_DIR=" + t.TempDir()}, []string{"--admin", admin},
			[]string{"read the admin token", "admin.token: no such file", "--token-file", "OCEANHOOKS_ADMIN_TOKEN_FILE", "OCEANHOOKS_DATA_DIR"}},
		{"a missing --token-file", nil, []string{"--admin", admin, "--token-file", filepath.Join(t.TempDir(), "nope")},
			[]string{"read the admin token", "nope: no such file"}},
		{"a token file open to others", nil, []string{"--admin", admin, "--token-file", open},
			[]string{"open to group or others (mode 0644)"}},
		{"a wrong token", nil, []string{"--admin", admin, "--token-file", wrong},
			[]string{"401 Unauthorized: missing or wrong admin token"}},
		{"a broken config", []string{"OCEANHOOKS_DELIVERY_WORKERS=lots"}, []string{"--admin", admin, "--token-file", dataDirToken},
			[]string{"delivery.workers"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, tt.env, append([]string{"hooks", "list"}, tt.args...)...)
			require.Error(t, err)
			for _, m := range tt.msg {
				assert.Contains(t, err.Error(), m)
			}
			assert.NotContains(t, err.Error(), strings.Repeat("o", 64), "the token is never shown")
		})
	}
}

// TestOperatorCommandsWithATokenFile: a server whose admin.tokenFile comes
// from the environment, and the operator commands given the same environment.
func TestOperatorCommandsWithATokenFile(t *testing.T) {
	oc := oceantest.New(t)
	tokenFile := writeToken(t, strings.Repeat("s", 48))
	s, cfg := startServer(t, oc.URL, func(c *config.Config) { c.Admin.TokenFile = tokenFile })
	createHook(t, s.Addr().String(), oceantest.TokenAlice, "alices")
	_, err := os.Stat(filepath.Join(cfg.DataDir, config.AdminTokenFileName))
	require.ErrorIs(t, err, os.ErrNotExist, "no token is generated when admin.tokenFile is set")

	stdout, _, err := runCLI(t, []string{"OCEANHOOKS_ADMIN_TOKEN_FILE=" + tokenFile}, "hooks", "list", "--admin", s.AdminAddr().String())
	require.NoError(t, err)
	assert.Contains(t, stdout, "1 hooks")
}

// TestMigrate: `oceanhooks migrate` applies every migration to a fresh
// schema and prints each, finds nothing to do the second time, and refuses
// the badger backend and an unreachable server.
func TestMigrate(t *testing.T) {
	url := pgtest.ServerURL(t)
	schema := pgtest.NewSchema(t, url)
	env := []string{"OCEANHOOKS_STORE_BACKEND=postgres", "OCEANHOOKS_STORE_POSTGRES_URL=" + url, "OCEANHOOKS_STORE_POSTGRES_SCHEMA=" + schema}
	ms, err := pgstore.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	last := ms[len(ms)-1].Version

	stdout, _, err := runCLI(t, env, "migrate")
	require.NoError(t, err)
	for _, m := range ms {
		assert.Contains(t, stdout, fmt.Sprintf("applied %04d_%s\n", m.Version, m.Name))
	}
	assert.Contains(t, stdout, fmt.Sprintf("schema %s on 127.0.0.1:", schema))
	assert.Contains(t, stdout, fmt.Sprintf("is now at version %d\n", last))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := pgtest.OpenSchema(t, url, schema)
	v, err := db.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, last, v, "the schema is migrated")

	stdout, _, err = runCLI(t, env, "migrate")
	require.NoError(t, err)
	assert.NotContains(t, stdout, "applied")
	assert.Contains(t, stdout, fmt.Sprintf("is current, at version %d\n", last))

	t.Run("badger", func(t *testing.T) {
		_, _, err := runCLI(t, []string{"OCEANHOOKS_STORE_POSTGRES_URL=" + url}, "migrate")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "store.backend is badger: only the postgres backend has migrations")
	})
	t.Run("unreachable", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		bad := "postgres://oceanhooks:hunter2secret@" + strings.TrimPrefix(dead.URL, "http://") + "/ocean?sslmode=disable"
		_, _, err := runCLI(t, []string{"OCEANHOOKS_STORE_BACKEND=postgres", "OCEANHOOKS_STORE_POSTGRES_URL=" + bad}, "migrate")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "migrate: postgres")
		assert.NotContains(t, err.Error(), "hunter2secret", "the password is never shown")
	})
}
