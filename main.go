// Command oceanhooks is a sidecar reverse proxy in front of an unchanged Ocean
// (a Misskey-compatible server) that fires Ocean's user webhooks from the API
// responses it sees, keeps hooks and a durable delivery queue on disk, and
// delivers them. Run `oceanhooks serve`; `oceanhooks --help` lists the rest.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/server"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "oceanhooks:", err)
		os.Exit(1)
	}
}

// run runs the command line args (args[0] is the program name) until it is
// done or ctx ends.
func run(ctx context.Context, args []string) error {
	return newApp(os.Stdout, os.Stderr, os.Environ()).RunContext(ctx, args)
}

// serveFlags maps each config flag to its dotted config key.
var serveFlags = []struct{ name, key, usage string }{
	{"listen", "listen", "`ADDR` (host:port) the proxy listens on"},
	{"upstream", "upstream", "Ocean's base `URL`"},
	{"public-url", "publicURL", "public `URL` of the Ocean instance (the server field of deliveries)"},
	{"data-dir", "dataDir", "`DIR`: directory of the embedded store"},
	{"admin-listen", "adminListen", "`ADDR` (host:port) of the admin listener"},
	{"admin-token-file", "admin.tokenFile", "`FILE` holding the admin listener's bearer token (default: admin.token in the data dir, generated at the first start)"},
	{"log-level", "log.level", "`LEVEL`: debug, info, warn or error"},
	{"log-format", "log.format", "`FORMAT`: text or json"},
}

const defaultAdminURL = "http://" + config.DefaultAdminListen

// operatorFlags are the flags of every command that talks to the admin
// listener: where it is and where its token is.
func operatorFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "admin", Usage: "`URL` of the running server's admin listener (default: its adminListen from the config, else " + defaultAdminURL + ")"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "the server's config `FILE` (default: $" + config.EnvConfigFile + "), read for adminListen, admin.tokenFile and dataDir"},
		&cli.StringFlag{Name: "token-file", Usage: "`FILE` holding the admin token (default: the config's admin.tokenFile, else admin.token in its dataDir)"},
	}
}

func newApp(stdout, stderr io.Writer, environ []string) *cli.App {
	flags := []cli.Flag{&cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Usage:   "YAML config `FILE` (default: $" + config.EnvConfigFile + ", else none: defaults, env and flags only)",
	}}
	for _, f := range serveFlags {
		flags = append(flags, &cli.StringFlag{Name: f.name, Usage: f.usage + " (config key " + f.key + ")"})
	}

	return &cli.App{
		Name:            "oceanhooks",
		Usage:           "webhooks for Ocean, fired by a sidecar reverse proxy",
		Version:         version,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// Errors are returned to main, which alone prints them and exits.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			{
				Name:  "serve",
				Usage: "run the sidecar until SIGTERM or SIGINT",
				Description: "Settings come from the defaults, then --config FILE, then OCEANHOOKS_* environment\n" +
					"variables, then these flags; see config.example.yaml for every key.",
				Flags: flags,
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("serve takes no arguments, got %q", c.Args().Slice())
					}
					cfg, err := loadConfig(c, c.String("config"), environ)
					if err != nil {
						return err
					}
					logger, err := newLogger(cfg.Log, stderr)
					if err != nil {
						return err
					}
					logger.Info("oceanhooks starting", "version", version, "go", runtime.Version())
					return server.Run(c.Context, cfg, logger)
				},
			},
			{
				Name:      "check-config",
				Usage:     "check a config file (with the OCEANHOOKS_* environment) and list every problem",
				ArgsUsage: "[FILE]",
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 {
						return fmt.Errorf("check-config takes at most one FILE, got %d arguments", c.NArg())
					}
					cfg, err := loadConfig(c, c.Args().First(), environ)
					if err != nil {
						return err
					}
					file := c.Args().First()
					if file == "" {
						file = envValue(environ, config.EnvConfigFile)
					}
					if file == "" {
						file = "(no file: defaults and environment)"
					}
					fmt.Fprintf(stdout, "ok: %s\n", file)
					fmt.Fprintf(stdout, "  listen %s → upstream %s (server %s)\n", cfg.Listen, cfg.Upstream, cfg.ServerURL())
					fmt.Fprintf(stdout, "  admin %s (token file %s), data %s, log %s/%s\n", cfg.AdminListen, cfg.AdminTokenPath(), cfg.DataDir, cfg.Log.Level, cfg.Log.Format)
					return nil
				},
			},
			{
				Name:  "healthcheck",
				Usage: "exit 0 when the running server's admin listener answers /healthz (or /readyz) with 200",
				Description: "For container and service managers (a Docker HEALTHCHECK, a systemd watchdog script).\n" +
					"Needs no token: /healthz and /readyz are open on the admin listener.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "admin", Usage: "`URL` of the admin listener (default: adminListen from the config, else " + defaultAdminURL + ")"},
					&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "the server's config `FILE` (default: $" + config.EnvConfigFile + ")"},
					&cli.BoolFlag{Name: "ready", Usage: "ask /readyz (store open, Ocean reachable) instead of /healthz"},
				},
				Action: func(c *cli.Context) error {
					base := c.String("admin")
					if base == "" {
						cfg, err := loadConfig(c, c.String("config"), environ)
						if err != nil {
							return err
						}
						base = "http://" + dialable(cfg.AdminListen)
					}
					path := "/healthz"
					if c.Bool("ready") {
						path = "/readyz"
					}
					return healthcheck(c.Context, base, path, stdout)
				},
			},
			{
				Name:  "version",
				Usage: "print the version, Go version and build information",
				Action: func(c *cli.Context) error {
					printVersion(stdout)
					return nil
				},
			},
			importCommand(stdout, environ),
			{
				Name:  "migrate",
				Usage: "apply the PostgreSQL store's migrations (store.backend: postgres) and print what it applied",
				Description: "serve applies them too when it starts; run this first to migrate once before starting\n" +
					"several sidecars, or to see where the schema stands. Several may run at once: a lock in the\n" +
					"database lets one apply each migration and the others find nothing left to do.",
				Flags: []cli.Flag{&cli.StringFlag{
					Name:    "config",
					Aliases: []string{"c"},
					Usage:   "the server's config `FILE` (default: $" + config.EnvConfigFile + "), read for store.postgres",
				}},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("migrate takes no arguments, got %q", c.Args().Slice())
					}
					cfg, err := loadConfig(c, c.String("config"), environ)
					if err != nil {
						return err
					}
					return migrate(c.Context, cfg, stdout)
				},
			},
			{
				Name:  "hooks",
				Usage: "inspect hooks through the running server's admin listener",
				Subcommands: []*cli.Command{{
					Name:  "list",
					Usage: "list hooks (secrets masked)",
					Flags: append(operatorFlags(),
						&cli.StringFlag{Name: "user", Usage: "only the hooks of user `ID`"},
						&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
					),
					Action: func(c *cli.Context) error {
						q := url.Values{}
						if u := c.String("user"); u != "" {
							q.Set("userId", u)
						}
						admin, err := adminOf(c, environ)
						if err != nil {
							return err
						}
						body, err := admin.call(c.Context, http.MethodGet, "/hooks", q, nil)
						if err != nil {
							return err
						}
						if c.Bool("json") {
							return printJSON(stdout, body)
						}
						return printHooks(stdout, body)
					},
				}},
			},
			{
				Name:  "deliveries",
				Usage: "inspect and redeliver a hook's deliveries through the running server's admin listener",
				Subcommands: []*cli.Command{
					{
						Name:  "list",
						Usage: "list deliveries with their attempts, newest first",
						Flags: append(operatorFlags(),
							&cli.StringFlag{Name: "webhook", Usage: "only the deliveries of hook `ID` (default: every hook)"},
							&cli.IntFlag{Name: "limit", Value: 10, Usage: "at most `N` deliveries (1-100)"},
							&cli.StringFlag{Name: "until", Usage: "only deliveries older than delivery `ID` (paging)"},
							&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
						),
						Action: func(c *cli.Context) error {
							q := url.Values{"limit": {strconv.Itoa(c.Int("limit"))}}
							if h := c.String("webhook"); h != "" {
								q.Set("webhookId", h)
							}
							if u := c.String("until"); u != "" {
								q.Set("untilId", u)
							}
							admin, err := adminOf(c, environ)
							if err != nil {
								return err
							}
							body, err := admin.call(c.Context, http.MethodGet, "/deliveries", q, nil)
							if err != nil {
								return err
							}
							if c.Bool("json") {
								return printJSON(stdout, body)
							}
							return printDeliveries(stdout, body)
						},
					},
					{
						Name:  "redeliver",
						Usage: "queue one delivery again, or start redelivering every dead letter of the hook in the background",
						Flags: append(operatorFlags(),
							&cli.StringFlag{Name: "webhook", Required: true, Usage: "hook `ID`"},
							&cli.StringFlag{Name: "delivery", Usage: "delivery `ID` (default: every dead letter of the hook)"},
						),
						Action: func(c *cli.Context) error {
							req, err := json.Marshal(map[string]string{"webhookId": c.String("webhook"), "deliveryId": c.String("delivery")})
							if err != nil {
								return err
							}
							admin, err := adminOf(c, environ)
							if err != nil {
								return err
							}
							body, err := admin.call(c.Context, http.MethodPost, "/deliveries", nil, req)
							if err != nil {
								return err
							}
							var out struct {
								Redelivered *int `json:"redelivered"`
								Started     bool `json:"started"`
							}
							err = json.Unmarshal(body, &out)
							switch {
							case err == nil && c.String("delivery") == "" && out.Started:
								fmt.Fprintf(stdout, "started redelivering every dead letter of hook %s in the background\n", c.String("webhook"))
							case err == nil && c.String("delivery") != "" && out.Redelivered != nil:
								fmt.Fprintf(stdout, "queued %d deliveries again\n", *out.Redelivered)
							default:
								return fmt.Errorf("read admin answer: unexpected %q", body)
							}
							return nil
						},
					},
				},
			},
		},
	}
}

// migrateTimeout bounds `oceanhooks migrate`: connecting, waiting for
// another sidecar's migration lock, and the migrations.
const migrateTimeout = 10 * time.Minute

// migrate applies the PostgreSQL store's pending migrations and prints each,
// then the schema's version.
func migrate(ctx context.Context, cfg config.Config, w io.Writer) error {
	if cfg.Store.Backend != config.BackendPostgres {
		return fmt.Errorf("migrate: store.backend is %s: only the postgres backend has migrations (set store.backend: postgres and store.postgres.url, or %s)",
			cfg.Store.Backend, config.EnvName("store.postgres.url"))
	}
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	db, err := pgstore.Open(ctx, cfg.Store.Postgres.URL, cfg.Store.Postgres.Schema, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	for _, m := range applied {
		fmt.Fprintf(w, "applied %04d_%s\n", m.Version, m.Name)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	v, err := db.Version(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(w, "schema %s on %s is current, at version %d\n", db.Schema(), db.Server(), v)
	} else {
		fmt.Fprintf(w, "schema %s on %s is now at version %d\n", db.Schema(), db.Server(), v)
	}
	return nil
}

// loadConfig builds the effective config of file (else $OCEANHOOKS_CONFIG),
// the environment and the config flags that were set on c.
func loadConfig(c *cli.Context, file string, environ []string) (config.Config, error) {
	if file == "" {
		file = envValue(environ, config.EnvConfigFile)
	}
	src := config.Sources{File: file, Environ: environ, Flags: map[string]string{}, FlagNames: map[string]string{}}
	for _, f := range serveFlags {
		if c.IsSet(f.name) {
			src.Flags[f.key] = c.String(f.name)
			src.FlagNames[f.key] = f.name
		}
	}
	return config.Load(src)
}

func envValue(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// newLogger builds the process logger on w from the log settings.
func newLogger(l config.Log, w io.Writer) (*slog.Logger, error) {
	level, err := config.ParseLevel(l.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format: must be text or json, got %q", l.Format)
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "oceanhooks %s\n", version)
	fmt.Fprintf(w, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	fmt.Fprintf(w, "module: %s %s\n", info.Main.Path, info.Main.Version)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		line := settings["vcs"] + " " + rev
		if t := settings["vcs.time"]; t != "" {
			line += " " + t
		}
		if settings["vcs.modified"] == "true" {
			line += " (modified)"
		}
		fmt.Fprintf(w, "vcs: %s\n", line)
	}
}

// adminTimeout bounds one operator request to the admin listener.
const adminTimeout = 30 * time.Second

// adminTarget is the running server's admin listener and its token.
type adminTarget struct {
	base  string // URL
	token string
}

// adminOf finds the admin listener and its token for an operator command:
// --admin, else the config's adminListen; --token-file, else the config's
// admin.tokenFile (env OCEANHOOKS_ADMIN_TOKEN_FILE), else admin.token in its
// dataDir. The config is the server's: --config, else $OCEANHOOKS_CONFIG,
// with the OCEANHOOKS_ environment.
func adminOf(c *cli.Context, environ []string) (adminTarget, error) {
	cfg, err := loadConfig(c, c.String("config"), environ)
	if err != nil {
		return adminTarget{}, err
	}
	base := c.String("admin")
	if base == "" {
		base = "http://" + dialable(cfg.AdminListen)
	}
	path := c.String("token-file")
	if path == "" {
		path = cfg.AdminTokenPath()
	}
	token, err := server.ReadAdminToken(path)
	if err != nil {
		return adminTarget{}, fmt.Errorf("read the admin token: %w (give --token-file, or the server's --config, %s or %s)",
			err, config.EnvName("admin.tokenFile"), config.EnvName("dataDir"))
	}
	return adminTarget{base: base, token: token}, nil
}

// dialable turns a listen address into one to connect to: an unspecified
// host becomes loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// call sends one operator request to the admin listener and returns the 2xx
// body; other answers become errors carrying the server's reason.
func (a adminTarget) call(ctx context.Context, method, path string, q url.Values, reqBody []byte) ([]byte, error) {
	base := a.base
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + path)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q is not a URL", base)
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("admin request: %w", err)
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin listener at %s: %w (is `oceanhooks serve` running, and is --admin its adminListen?)", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin listener: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("admin listener: %s %s: %s: %s", method, path, resp.Status, errorReason(body))
	}
	return body, nil
}

// healthcheck GETs base+path and succeeds on 200, printing the answer.
func healthcheck(ctx context.Context, base, path string, w io.Writer) error {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	_, _ = w.Write(body)
	return nil
}

// errorReason extracts a readable reason from an error answer: Ocean's
// {"error":{"message"}} form, {"error":"…"}, or the text itself.
func errorReason(body []byte) string {
	var oe struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &oe) == nil && len(oe.Error) > 0 {
		var s string
		if json.Unmarshal(oe.Error, &s) == nil {
			return s
		}
		var obj struct{ Message, Code string }
		if json.Unmarshal(oe.Error, &obj) == nil && obj.Message != "" {
			if obj.Code != "" {
				return obj.Code + ": " + obj.Message
			}
			return obj.Message
		}
	}
	return strings.TrimSpace(string(body))
}

func printJSON(w io.Writer, body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("read admin answer: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// operatorHook is what `hooks list` shows of the admin listener's hook view.
type operatorHook struct {
	ID           string     `json:"id"`
	UserID       string     `json:"userId"`
	Name         string     `json:"name"`
	On           []string   `json:"on"`
	URL          string     `json:"url"`
	Active       bool       `json:"active"`
	LatestSentAt *time.Time `json:"latestSentAt"`
	LatestStatus *int       `json:"latestStatus"`
}

func printHooks(w io.Writer, body []byte) error {
	var hooks []operatorHook
	if err := json.Unmarshal(body, &hooks); err != nil {
		return fmt.Errorf("read admin answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tNAME\tACTIVE\tON\tURL\tLATEST")
	for _, h := range hooks {
		latest := "-"
		if h.LatestStatus != nil {
			latest = strconv.Itoa(*h.LatestStatus)
			if h.LatestSentAt != nil {
				latest += " at " + h.LatestSentAt.UTC().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\n", h.ID, h.UserID, h.Name, h.Active, strings.Join(h.On, ","), h.URL, latest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d hooks\n", len(hooks))
	return nil
}

type operatorDelivery struct {
	ID        string     `json:"id"`
	HookID    string     `json:"webhookId"`
	EventID   string     `json:"eventId"`
	Type      string     `json:"type"`
	CreatedAt time.Time  `json:"createdAt"`
	State     string     `json:"state"`
	NextAt    *time.Time `json:"nextAttemptAt"`
	Attempts  []struct {
		At     time.Time `json:"at"`
		Status int       `json:"status"`
		Error  string    `json:"error"`
	} `json:"attempts"`
}

func printDeliveries(w io.Writer, body []byte) error {
	var ds []operatorDelivery
	if err := json.Unmarshal(body, &ds); err != nil {
		return fmt.Errorf("read admin answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWEBHOOK\tTYPE\tSTATE\tCREATED\tATTEMPTS\tLAST\tNEXT")
	for _, d := range ds {
		last, next := "-", "-"
		if n := len(d.Attempts); n > 0 {
			a := d.Attempts[n-1]
			last = strconv.Itoa(a.Status)
			if a.Error != "" {
				last += " " + a.Error
			}
		}
		if d.NextAt != nil {
			next = d.NextAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.HookID, d.Type, d.State,
			d.CreatedAt.UTC().Format(time.RFC3339), len(d.Attempts), last, next)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ds) > 0 {
		fmt.Fprintf(w, "%d deliveries; older ones: --until %s\n", len(ds), ds[len(ds)-1].ID)
	} else {
		fmt.Fprintln(w, "0 deliveries")
	}
	return nil
}
