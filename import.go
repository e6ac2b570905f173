package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/oceandb"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// EnvOceanDatabase names Ocean's PostgreSQL URL for `import` when
// --database is not given (outside OCEANHOOKS_, which names settings only).
const EnvOceanDatabase = "OCEAN_DATABASE_URL"

// importTimeout bounds a whole import: the read, every request to the
// sidecar, and the commit.
const importTimeout = 10 * time.Minute

// importCommand is `oceanhooks import`: every user's hooks from Ocean's
// database into the running server, through its admin listener (which
// holds the store, so the proxy keeps serving meanwhile).
func importCommand(stdout io.Writer, environ []string) *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "move every user's hooks from Ocean's database into the running server (dry run unless --apply)",
		Description: "Reads Ocean's webhook table and shows, per hook, what would be imported, what is already in\n" +
			"oceanhooks and what stays in Ocean and why. --apply imports through the running server's admin\n" +
			"listener; --deactivate also switches the imported hooks off in Ocean, in the same PostgreSQL\n" +
			"transaction, committed only after the server stored them. Run it again at will: nothing is\n" +
			"imported twice.",
		Flags: append(operatorFlags(),
			&cli.StringFlag{Name: "database", Usage: "Ocean's PostgreSQL `URL`, postgres://user:password@host:5432/db (default: $" + EnvOceanDatabase + "); read-only is enough without --deactivate"},
			&cli.BoolFlag{Name: "apply", Usage: "import for real (default: a dry run that changes nothing)"},
			&cli.BoolFlag{Name: "deactivate", Usage: "also switch the imported hooks off in Ocean (active = false)"},
			&cli.StringFlag{Name: "ocean-redis", Usage: "Redis `URL` Ocean publishes on, with a user that may PUBLISH, to tell Ocean's processes that hooks were switched off (default: the config's ocean.redis.url)"},
			&cli.StringFlag{Name: "channel", Usage: "Ocean's pub/sub `CHANNEL`, its config.host (default: the config's ocean.redis.channel, else the host of publicURL)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("import takes no arguments, got %q", c.Args().Slice())
			}
			dsn := c.String("database")
			if dsn == "" {
				dsn = envValue(environ, EnvOceanDatabase)
			}
			if dsn == "" {
				return fmt.Errorf("give Ocean's PostgreSQL URL with --database or $%s", EnvOceanDatabase)
			}
			admin, err := adminOf(c, environ)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(c, c.String("config"), environ)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, importTimeout)
			defer cancel()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return fmt.Errorf("connect to Ocean's database: %w", err)
			}
			defer conn.Close(context.WithoutCancel(ctx))
			opts := oceandb.Options{Apply: c.Bool("apply"), Deactivate: c.Bool("deactivate")}
			sum, err := oceandb.Run(ctx, conn, sidecarAdmin{admin}, opts)
			if err != nil {
				return fmt.Errorf("import: %w (nothing changed in Ocean)", err)
			}
			if err := printImport(stdout, sum, opts); err != nil {
				return err
			}
			if !opts.Apply || !opts.Deactivate || sum.Deactivated() == 0 {
				return nil
			}
			r := redisTarget{url: c.String("ocean-redis"), channel: c.String("channel")}
			if r.url == "" {
				r.url, r.password = cfg.Ocean.Redis.URL, cfg.Ocean.Redis.Password
			}
			if r.channel == "" {
				r.channel = cfg.StreamChannel()
			}
			return announce(ctx, stdout, r, sum)
		},
	}
}

// sidecarAdmin is oceandb.Sidecar through the admin listener's POST /hooks.
type sidecarAdmin struct{ admin adminTarget }

func (s sidecarAdmin) Import(ctx context.Context, hs []oceandb.Hook, dryRun bool) ([]oceandb.Result, error) {
	req := hooks.ImportRequest{DryRun: dryRun, Hooks: make([]hooks.ImportHook, len(hs))}
	for i, h := range hs {
		req.Hooks[i] = hooks.ImportHook{OceanID: h.ID, UserID: h.UserID, Name: h.Name, On: h.On, URL: h.URL,
			Secret: h.Secret, Active: h.Active, LatestSentAt: h.LatestSentAt, LatestStatus: h.LatestStatus}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := s.admin.call(ctx, http.MethodPost, "/hooks", nil, body)
	if err != nil {
		return nil, err
	}
	var res struct{ Results []hooks.ImportResult }
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("read admin answer: %w", err)
	}
	results := make([]oceandb.Result, len(res.Results))
	for i, r := range res.Results {
		results[i] = oceandb.Result{OceanID: r.OceanID, HookID: r.HookID, Outcome: r.Outcome}
	}
	return results, nil
}

// printImport shows every hook of Ocean's table with its outcome, then the
// totals and what the operator should know next. Secrets are never shown,
// URLs as scheme://host/… only.
func printImport(w io.Writer, sum oceandb.Summary, opts oceandb.Options) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OCEAN ID\tUSER\tNAME\tACTIVE\tON\tURL\tOUTCOME")
	for _, e := range sum.Entries {
		outcome := e.Outcome
		switch {
		case e.Outcome == oceandb.StaysInOcean:
			outcome += " (events oceanhooks does not send: " + strings.Join(e.Unsupported, ", ") + ")"
		case e.HookID != "" && e.HookID != e.Hook.ID:
			outcome += " as " + e.HookID
		}
		if e.Deactivate {
			if opts.Apply {
				outcome += ", switched off in Ocean"
			} else {
				outcome += ", would be switched off in Ocean"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\n", e.Hook.ID, e.Hook.UserID, e.Hook.Name, e.Hook.Active,
			strings.Join(e.Hook.On, ","), webhook.MaskURL(e.Hook.URL), outcome)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	kept := sum.Count(oceandb.StaysInOcean)
	already := sum.Count(hooks.ImportAlready)
	if !opts.Apply {
		fmt.Fprintf(w, "dry run, nothing changed: %d to import, %d already in oceanhooks, %d stay in Ocean", sum.Count(hooks.ImportWould), already, kept)
		if opts.Deactivate {
			fmt.Fprintf(w, ", %d to switch off in Ocean", sum.Deactivated())
		}
		fmt.Fprintln(w, "; run again with --apply to import")
		return nil
	}
	fmt.Fprintf(w, "imported %d, %d already in oceanhooks, %d stay in Ocean", sum.Count(hooks.ImportImported), already, kept)
	if opts.Deactivate {
		fmt.Fprintf(w, ", switched off %d in Ocean", sum.Deactivated())
	}
	fmt.Fprintln(w)
	if kept > 0 {
		fmt.Fprintln(w, "hooks that stay in Ocean keep firing from Ocean; oceanhooks does not list them")
	}
	if !opts.Deactivate {
		active := 0
		for _, e := range sum.Entries {
			if e.Outcome != oceandb.StaysInOcean && e.Hook.Active {
				active++
			}
		}
		if active > 0 {
			fmt.Fprintf(w, "%d imported hooks are still active in Ocean, so their events go out twice until each owner's next\n"+
				"call to /api/i/webhooks/* switches them off (hooks.takeOverNative), or run again with --deactivate\n", active)
		}
	}
	return nil
}

// redisTarget is where Ocean's processes hear of changed hooks.
type redisTarget struct{ url, password, channel string }

// announce tells Ocean's processes that the hooks were switched off: Ocean
// keeps its active hooks in memory and hears of changes only on its Redis
// (oceandb.WebhookUpdated). Without a Redis that accepts the message, the
// operator is told to restart Ocean.
func announce(ctx context.Context, w io.Writer, r redisTarget, sum oceandb.Summary) error {
	restart := "Ocean keeps its active hooks in memory: restart Ocean's processes (web and workers) so that the switched-off hooks stop firing from it"
	if r.url == "" || r.channel == "" {
		fmt.Fprintln(w, restart+" (or give --ocean-redis to tell them)")
		return nil
	}
	o, err := redis.ParseURL(r.url)
	if err != nil {
		return fmt.Errorf("--ocean-redis: %w; %s", err, restart)
	}
	if r.password != "" {
		o.Password = r.password
	}
	rdb := redis.NewClient(o)
	defer rdb.Close()
	n := 0
	for _, e := range sum.Entries {
		if !e.Deactivate {
			continue
		}
		if err := rdb.Publish(ctx, r.channel, oceandb.WebhookUpdated(e.Hook)).Err(); err != nil {
			return fmt.Errorf("tell Ocean on its Redis (channel %s): %w; the hooks are switched off in its database, but %s", r.channel, err, restart)
		}
		n++
	}
	fmt.Fprintf(w, "told Ocean's processes on Redis channel %s that %s hooks were switched off\n", r.channel, strconv.Itoa(n))
	return nil
}
