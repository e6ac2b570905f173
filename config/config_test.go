package config

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const examplePath = "../config.example.yaml"

func problems(t *testing.T, err error) []Problem {
	t.Helper()
	require.Error(t, err)
	var ce *Error
	require.True(t, errors.As(err, &ce), "want *config.Error, got %T: %v", err, err)
	return ce.Problems
}

func TestExampleLoadsAndDocumentsTheDefaults(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	cfg, err := Parse(examplePath, data)
	require.NoError(t, err)
	assert.Equal(t, Default(), cfg, "config.example.yaml must show every default as it is")
}

func TestDefaultsAreValid(t *testing.T) {
	assert.NoError(t, Default().Validate())
	cfg, err := Load(Sources{})
	require.NoError(t, err)
	assert.Equal(t, Default(), cfg)
}

// yamlKeys walks a struct type on its own (not through the package's field
// table) and returns every dotted yaml key.
func yamlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if prefix != "" {
			name = prefix + "." + name
		}
		if sf.Type.Kind() == reflect.Struct {
			out = append(out, yamlKeys(sf.Type, name)...)
			continue
		}
		out = append(out, name)
	}
	return out
}

func nodeKeys(n *yaml.Node, prefix string, into map[string]bool) {
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			nodeKeys(c, prefix, into)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		if prefix != "" {
			key = prefix + "." + key
		}
		into[key] = true
		nodeKeys(n.Content[i+1], key, into)
	}
}

func TestExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &doc))
	present := map[string]bool{}
	nodeKeys(&doc, "", present)

	keys := yamlKeys(reflect.TypeFor[Config](), "")
	require.NotEmpty(t, keys)
	assert.Equal(t, keys, Keys(), "Keys() must list the struct's keys in order")
	for _, k := range keys {
		assert.True(t, present[k], "config.example.yaml lacks key %s", k)
	}
}

// TestEveryFieldIsDocumented checks that the struct is the documentation:
// every field of every config type has a doc comment, and every leaf names
// its default.
func TestEveryFieldIsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	require.NoError(t, err)
	sections := map[string]bool{"Ocean": true, "Redis": true, "Admin": true, "Log": true, "Proxy": true, "Auth": true, "Events": true, "Hooks": true, "Delivery": true, "Store": true, "Postgres": true}
	checked := 0
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return true
		}
		for _, fld := range st.Fields.List {
			name := fld.Names[0].Name
			if id, ok := fld.Type.(*ast.Ident); ok && sections[id.Name] {
				continue // a section: its type carries the comment
			}
			checked++
			if !assert.NotNil(t, fld.Doc, "%s.%s has no doc comment", ts.Name.Name, name) {
				continue
			}
			assert.Contains(t, fld.Doc.Text(), "Default", "%s.%s: doc comment must name the default", ts.Name.Name, name)
		}
		return true
	})
	assert.Equal(t, len(Keys()), checked, "every key's field was checked")
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []Problem // Key and Source must match; Msg must contain the given text
	}{
		{
			name: "unknown top-level key",
			yaml: "listen: \":3001\"\nlistne: \":4000\"\n",
			want: []Problem{{Key: "listne", Source: "test.yaml line 2", Msg: "unknown key"}},
		},
		{
			name: "misspelt nested key suggests the right one",
			yaml: "delivery:\n  workers: 3\n  maxAtempts: 3\n",
			want: []Problem{{Key: "delivery.maxAtempts", Source: "test.yaml line 3", Msg: `did you mean "maxAttempts"`}},
		},
		{
			name: "unknown key lists the known ones when nothing is close",
			yaml: "log:\n  colour: blue\n",
			want: []Problem{{Key: "log.colour", Source: "test.yaml line 2", Msg: "known keys here: level, format"}},
		},
		{
			name: "bad duration names the key",
			yaml: "auth:\n  cacheTTL: 30 seconds\n",
			want: []Problem{{Key: "auth.cacheTTL", Source: "test.yaml line 2", Msg: `invalid duration "30 seconds"`}},
		},
		{
			name: "a bare number is not a duration",
			yaml: "shutdownGrace: 30\n",
			want: []Problem{{Key: "shutdownGrace", Source: "test.yaml line 1", Msg: "invalid duration"}},
		},
		{
			name: "bad URL names the key",
			yaml: "upstream: ftp://ocean:21\n",
			want: []Problem{{Key: "upstream", Source: "test.yaml line 1", Msg: "want an http:// or https:// URL"}},
		},
		{
			name: "URL without host",
			yaml: "publicURL: \"https://\"\n",
			want: []Problem{{Key: "publicURL", Source: "test.yaml line 1", Msg: "no host"}},
		},
		{
			name: "bad size",
			yaml: "tapBodyCap: 1 megabyte\n",
			want: []Problem{{Key: "tapBodyCap", Source: "test.yaml line 1", Msg: `invalid size "1 megabyte"`}},
		},
		{
			name: "integer expected",
			yaml: "delivery:\n  workers: many\n",
			want: []Problem{{Key: "delivery.workers", Source: "test.yaml line 2", Msg: `want an integer, got "many"`}},
		},
		{
			name: "boolean expected",
			yaml: "admin:\n  metricsPublic: sometimes\n",
			want: []Problem{{Key: "admin.metricsPublic", Source: "test.yaml line 2", Msg: `want true or false, got "sometimes"`}},
		},
		{
			name: "list expected",
			yaml: "proxy:\n  trustedProxies: 10.0.0.0/8\n",
			want: []Problem{{Key: "proxy.trustedProxies", Source: "test.yaml line 2", Msg: "want a list"}},
		},
		{
			name: "bad CIDR",
			yaml: "delivery:\n  allowedPrivateNetworks: [\"10.0.0.0/8\", \"10.0.0.0/40\", \"nope\"]\n",
			want: []Problem{{Key: "delivery.allowedPrivateNetworks", Source: "test.yaml line 2", Msg: `"10.0.0.0/40", "nope"`}},
		},
		{
			name: "section given a scalar",
			yaml: "log: debug\n",
			want: []Problem{{Key: "log", Source: "test.yaml line 1", Msg: "want a mapping"}},
		},
		{
			name: "scalar given a mapping",
			yaml: "listen:\n  port: 3001\n",
			want: []Problem{{Key: "listen", Source: "test.yaml line 2", Msg: "want a single value"}},
		},
		{
			name: "duplicate key",
			yaml: "listen: \":1\"\nlisten: \":2\"\n",
			want: []Problem{{Key: "listen", Source: "test.yaml line 2", Msg: "duplicate key (first at line 1)"}},
		},
		{
			name: "syntax error",
			yaml: "listen: [\n",
			want: []Problem{{Msg: "test.yaml: yaml:"}},
		},
		{
			name: "not a mapping",
			yaml: "- listen\n",
			want: []Problem{{Source: "test.yaml line 1", Msg: "want a mapping of keys, got a list"}},
		},
		{
			name: "two documents",
			yaml: "listen: \":1\"\n---\nlisten: \":2\"\n",
			want: []Problem{{Msg: "want one YAML document"}},
		},
		{
			name: "every problem is reported together, in file order, validation last",
			yaml: "listne: x\nupstream: nope\nlog:\n  level: loud\ndelivery:\n  backoffBase: 1x\n  maxAttempts: 0\n",
			want: []Problem{
				{Key: "listne", Source: "test.yaml line 1", Msg: "unknown key"},
				{Key: "delivery.backoffBase", Source: "test.yaml line 6", Msg: "invalid duration"},
				{Key: "upstream", Source: "test.yaml line 2", Msg: "want an http:// or https:// URL"},
				{Key: "log.level", Source: "test.yaml line 4", Msg: `must be debug, info, warn or error, got "loud"`},
				{Key: "delivery.maxAttempts", Source: "test.yaml line 7", Msg: "must be at least 1, got 0"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tt.yaml))
			got := problems(t, err)
			require.Len(t, got, len(tt.want), "problems: %v", err)
			for i, w := range tt.want {
				assert.Equal(t, w.Key, got[i].Key, "problem %d", i)
				assert.Equal(t, w.Source, got[i].Source, "problem %d", i)
				assert.Contains(t, got[i].Msg, w.Msg, "problem %d", i)
			}
			// The error text lists each problem as "key: problem".
			for _, p := range got {
				assert.Contains(t, err.Error(), p.String())
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c Config)
	}{
		{"size string", "tapBodyCap: 512KiB\n", func(t *testing.T, c Config) {
			assert.Equal(t, ByteSize(512*1024), c.TapBodyCap)
		}},
		{"size integer", "tapBodyCap: 2048\n", func(t *testing.T, c Config) {
			assert.Equal(t, ByteSize(2048), c.TapBodyCap)
		}},
		{"memory budget", "store:\n  memoryBudget: 256MiB\n", func(t *testing.T, c Config) {
			assert.Equal(t, ByteSize(256<<20), c.Store.MemoryBudget)
		}},
		{"durations", "delivery:\n  backoffBase: 1m30s\n  backoffCap: 2h\n", func(t *testing.T, c Config) {
			assert.Equal(t, 90*time.Second, c.Delivery.BackoffBase.D())
			assert.Equal(t, 2*time.Hour, c.Delivery.BackoffCap.D())
		}},
		{"lists", "proxy:\n  trustedProxies:\n    - 10.0.0.0/8\n    - 192.0.2.7\n", func(t *testing.T, c Config) {
			assert.Equal(t, []string{"10.0.0.0/8", "192.0.2.7"}, c.Proxy.TrustedProxies)
		}},
		{"empty section keeps defaults", "log:\n", func(t *testing.T, c Config) {
			assert.Equal(t, Default().Log, c.Log)
		}},
		{"comments only", "# nothing\n", func(t *testing.T, c Config) {
			assert.Equal(t, Default(), c)
		}},
		{"anchors and aliases", "upstream: &u http://ocean:3000\npublicURL: *u\n", func(t *testing.T, c Config) {
			assert.Equal(t, "http://ocean:3000", c.PublicURL)
		}},
		{"Misskey header prefix", "delivery:\n  headerPrefix: Misskey\n", func(t *testing.T, c Config) {
			assert.Equal(t, "Misskey", c.Delivery.HeaderPrefix)
		}},
		{"admin section", "admin:\n  tokenFile: /run/secrets/admin\n  metricsPublic: true\n  allowedHosts: [oceanhooks, \"localhost:19464\", \"::1\"]\n", func(t *testing.T, c Config) {
			assert.Equal(t, "/run/secrets/admin", c.Admin.TokenFile)
			assert.Equal(t, "/run/secrets/admin", c.AdminTokenPath())
			assert.True(t, c.Admin.MetricsPublic)
			assert.Equal(t, []string{"oceanhooks", "localhost:19464", "::1"}, c.Admin.AllowedHosts)
		}},
		{"admin token in the data dir by default", "dataDir: /var/lib/oceanhooks\n", func(t *testing.T, c Config) {
			assert.Equal(t, "/var/lib/oceanhooks/admin.token", c.AdminTokenPath())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.yaml", []byte(tt.yaml))
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		key    string
		msg    string
	}{
		{"empty listen", func(c *Config) { c.Listen = "" }, "listen", "must not be empty"},
		{"listen without port", func(c *Config) { c.Listen = "localhost" }, "listen", "want host:port"},
		{"admin port out of range", func(c *Config) { c.AdminListen = "127.0.0.1:70000" }, "adminListen", "invalid port"},
		{"admin same as listen", func(c *Config) { c.AdminListen = c.Listen }, "adminListen", "must differ from listen"},
		{"upstream with query", func(c *Config) { c.Upstream = "http://ocean/?x=1" }, "upstream", "want no user, query or fragment"},
		{"empty data dir", func(c *Config) { c.DataDir = " " }, "dataDir", "must not be empty"},
		{"zero tap cap", func(c *Config) { c.TapBodyCap = 0 }, "tapBodyCap", "more than 0"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "text or json"},
		{"header prefix", func(c *Config) { c.Delivery.HeaderPrefix = "ocean" }, "delivery.headerPrefix", "Ocean or Misskey"},
		{"negative grace", func(c *Config) { c.ShutdownGrace = -1 }, "shutdownGrace", "positive duration"},
		{"zero gc interval", func(c *Config) { c.Store.GCInterval = 0 }, "store.gcInterval", "positive duration"},
		{"memory budget too small", func(c *Config) { c.Store.MemoryBudget = 32 << 20 }, "store.memoryBudget", "at least 64MiB"},
		{"unknown store backend", func(c *Config) { c.Store.Backend = "sqlite" }, "store.backend", "badger or postgres"},
		{"postgres without a URL", func(c *Config) { c.Store.Backend = BackendPostgres }, "store.postgres.url", "must be set"},
		{"postgres schema that needs quoting", func(c *Config) {
			c.Store.Backend, c.Store.Postgres.URL, c.Store.Postgres.Schema = BackendPostgres, "postgres://db/ocean", "Ocean-Hooks"
		}, "store.postgres.schema", "lower-case identifier"},
		{"cap below base", func(c *Config) { c.Delivery.BackoffCap = Duration(time.Second) }, "delivery.backoffCap", "at least delivery.backoffBase"},
		{"no workers", func(c *Config) { c.Delivery.Workers = 0 }, "delivery.workers", "at least 1"},
		{"negative disableAfter", func(c *Config) { c.Delivery.DisableAfter = Duration(-time.Hour) }, "delivery.disableAfter", "0 (never) or a positive duration"},
		{"no per-hook slots", func(c *Config) { c.Delivery.PerHookConcurrency = 0 }, "delivery.perHookConcurrency", "at least 1"},
		{"negative quick retries", func(c *Config) { c.Delivery.QuickRetries = -1 }, "delivery.quickRetries", "at least 0"},
		{"too many quick retries", func(c *Config) { c.Delivery.QuickRetries = 11 }, "delivery.quickRetries", "at most 10"},
		{"no idle conns", func(c *Config) { c.Proxy.MaxIdleConnsPerHost = 0 }, "proxy.maxIdleConnsPerHost", "at least 1"},
		{"unknown proxy transport", func(c *Config) { c.Proxy.Transport = "h2" }, "proxy.transport", "lean or stdlib"},
		{"unknown proxy server", func(c *Config) { c.Proxy.Server = "h2c" }, "proxy.server", "lean or stdlib"},
		{"trusted proxy not a CIDR", func(c *Config) { c.Proxy.TrustedProxies = []string{"nginx"} }, "proxy.trustedProxies", `"nginx"`},
		{"zero observe timeout", func(c *Config) { c.Proxy.ObserveTimeout = 0 }, "proxy.observeTimeout", "positive duration"},
		{"observe timeout below read timeout", func(c *Config) { c.Proxy.ObserveTimeout = Duration(time.Second) }, "proxy.observeTimeout", "at least events.readTimeout"},
		{"allowed host with a scheme", func(c *Config) { c.Admin.AllowedHosts = []string{"http://oceanhooks"} }, "admin.allowedHosts", `"http://oceanhooks"`},
		{"allowed host wildcard", func(c *Config) { c.Admin.AllowedHosts = []string{"*.example"} }, "admin.allowedHosts", "no scheme, path or wildcard"},
		{"allowed host bad port", func(c *Config) { c.Admin.AllowedHosts = []string{"oceanhooks:0"} }, "admin.allowedHosts", "invalid port"},
		{"allowed host empty", func(c *Config) { c.Admin.AllowedHosts = []string{""} }, "admin.allowedHosts", "invalid host"},
		{"token file with spaces", func(c *Config) { c.Admin.TokenFile = "/run/token " }, "admin.tokenFile", "space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			got := problems(t, c.Validate())
			require.Len(t, got, 1, "%v", got)
			assert.Equal(t, tt.key, got[0].Key)
			assert.Contains(t, got[0].Msg, tt.msg)
		})
	}
}

func TestEphemeralPortsForBothListeners(t *testing.T) {
	c := Default()
	c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	assert.NoError(t, c.Validate(), "port 0 picks two different ports")
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "oceanhooks.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "listen: \":4001\"\nupstream: http://yaml:3000\ndelivery:\n  maxAttempts: 3\n  workers: 8\n")
	tests := []struct {
		name    string
		environ []string
		flags   map[string]string
		check   func(t *testing.T, c Config)
	}{
		{"YAML beats defaults", nil, nil, func(t *testing.T, c Config) {
			assert.Equal(t, ":4001", c.Listen)
			assert.Equal(t, 3, c.Delivery.MaxAttempts)
			assert.Equal(t, DefaultPerHookConcurrency, c.Delivery.PerHookConcurrency)
		}},
		{"env beats YAML", []string{"OCEANHOOKS_DELIVERY_MAX_ATTEMPTS=7", "OCEANHOOKS_LISTEN=:5001"}, nil, func(t *testing.T, c Config) {
			assert.Equal(t, 7, c.Delivery.MaxAttempts)
			assert.Equal(t, ":5001", c.Listen)
			assert.Equal(t, 8, c.Delivery.Workers, "keys not in env keep the YAML value")
		}},
		{"flag beats env", []string{"OCEANHOOKS_LISTEN=:5001", "OCEANHOOKS_UPSTREAM=http://env:3000"}, map[string]string{"listen": ":6001"}, func(t *testing.T, c Config) {
			assert.Equal(t, ":6001", c.Listen)
			assert.Equal(t, "http://env:3000", c.Upstream)
		}},
		{"env lists are comma-separated", []string{"OCEANHOOKS_DELIVERY_ALLOWED_PRIVATE_NETWORKS=10.0.0.0/8, 192.168.1.0/24,"}, nil, func(t *testing.T, c Config) {
			assert.Equal(t, []string{"10.0.0.0/8", "192.168.1.0/24"}, c.Delivery.AllowedPrivateNetworks)
		}},
		{"env sets durations, sizes and acronym keys", []string{"OCEANHOOKS_AUTH_CACHE_TTL=1m", "OCEANHOOKS_TAP_BODY_CAP=2MiB", "OCEANHOOKS_PUBLIC_URL=https://ocean.example"}, nil, func(t *testing.T, c Config) {
			assert.Equal(t, time.Minute, c.Auth.CacheTTL.D())
			assert.Equal(t, ByteSize(2<<20), c.TapBodyCap)
			assert.Equal(t, "https://ocean.example", c.PublicURL)
		}},
		{"env sets admin keys and booleans", []string{"OCEANHOOKS_ADMIN_TOKEN_FILE=/run/token", "OCEANHOOKS_ADMIN_METRICS_PUBLIC=true", "OCEANHOOKS_ADMIN_ALLOWED_HOSTS=oceanhooks,prom.internal:9464"}, map[string]string{"admin.tokenFile": "/etc/token"}, func(t *testing.T, c Config) {
			assert.Equal(t, "/etc/token", c.Admin.TokenFile, "flag beats env")
			assert.True(t, c.Admin.MetricsPublic)
			assert.Equal(t, []string{"oceanhooks", "prom.internal:9464"}, c.Admin.AllowedHosts)
		}},
		{"env sets the PostgreSQL store", []string{"OCEANHOOKS_STORE_BACKEND=postgres", "OCEANHOOKS_STORE_POSTGRES_URL=postgres://oh:pw@db:5432/ocean"}, nil, func(t *testing.T, c Config) {
			assert.Equal(t, BackendPostgres, c.Store.Backend)
			assert.Equal(t, "postgres://oh:pw@db:5432/ocean", c.Store.Postgres.URL)
			assert.Equal(t, DefaultPostgresSchema, c.Store.Postgres.Schema, "the default schema")
			assert.Equal(t, BackendBadger, Default().Store.Backend, "badger by default")
		}},
		{"env switches the takeover of Ocean's hooks off", []string{"OCEANHOOKS_HOOKS_TAKE_OVER_NATIVE=false"}, nil, func(t *testing.T, c Config) {
			assert.False(t, c.Hooks.TakeOverNative)
			assert.True(t, Default().Hooks.TakeOverNative, "on by default")
		}},
		{"other variables and the config file variable are ignored", []string{"HOME=/root", "OCEANHOOKS_CONFIG=/etc/x.yaml", "PATH"}, nil, func(t *testing.T, c Config) {
			assert.Equal(t, ":4001", c.Listen)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(Sources{File: file, Environ: tt.environ, Flags: tt.flags})
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestLoadProblemsNameTheirSource(t *testing.T) {
	file := writeFile(t, "delivery:\n  workers: 0\n")
	_, err := Load(Sources{
		File:      file,
		Environ:   []string{"OCEANHOOKS_DELIVERY_MAX_ATEMPTS=3", "OCEANHOOKS_AUTH_TIMEOUT=soon", "OCEANHOOKS_LOG_LEVEL=loud"},
		Flags:     map[string]string{"upstream": "ocean:3000"},
		FlagNames: map[string]string{"upstream": "upstream"},
	})
	got := problems(t, err)
	var lines []string
	for _, p := range got {
		lines = append(lines, p.String())
	}
	assert.Equal(t, []string{
		"auth.timeout: invalid duration \"soon\": want a Go duration such as \"30s\", \"2m\" or \"8h\" (env OCEANHOOKS_AUTH_TIMEOUT)",
		"OCEANHOOKS_DELIVERY_MAX_ATEMPTS: unknown setting, did you mean OCEANHOOKS_DELIVERY_MAX_ATTEMPTS? (env)",
		"upstream: invalid URL \"ocean:3000\": want an http:// or https:// URL (flag --upstream)",
		"log.level: must be debug, info, warn or error, got \"loud\" (env OCEANHOOKS_LOG_LEVEL)",
		"delivery.workers: must be at least 1, got 0 (" + file + " line 2)",
	}, lines)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(Sources{File: filepath.Join(t.TempDir(), "missing.yaml"), Environ: []string{"OCEANHOOKS_LISTEN="}})
	got := problems(t, err)
	require.Len(t, got, 2)
	assert.Contains(t, got[0].Msg, "read config file")
	assert.Equal(t, "listen", got[1].Key)
}

func TestEnvName(t *testing.T) {
	tests := map[string]string{
		"listen":                          "OCEANHOOKS_LISTEN",
		"publicURL":                       "OCEANHOOKS_PUBLIC_URL",
		"delivery.maxAttempts":            "OCEANHOOKS_DELIVERY_MAX_ATTEMPTS",
		"auth.cacheTTL":                   "OCEANHOOKS_AUTH_CACHE_TTL",
		"delivery.deadLetterTTL":          "OCEANHOOKS_DELIVERY_DEAD_LETTER_TTL",
		"proxy.maxIdleConnsPerHost":       "OCEANHOOKS_PROXY_MAX_IDLE_CONNS_PER_HOST",
		"delivery.allowedPrivateNetworks": "OCEANHOOKS_DELIVERY_ALLOWED_PRIVATE_NETWORKS",
		"store.gcInterval":                "OCEANHOOKS_STORE_GC_INTERVAL",
		"a.URLPath":                       "OCEANHOOKS_A_URL_PATH",
	}
	for key, want := range tests {
		t.Run(key, func(t *testing.T) {
			assert.Equal(t, want, EnvName(key))
		})
	}
	seen := map[string]string{}
	for _, k := range Keys() {
		env := EnvName(k)
		assert.NotContains(t, seen, env, "keys %s and %s share an env name", seen[env], k)
		seen[env] = k
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"1048576", 1 << 20, false},
		{"1MiB", 1 << 20, false},
		{"1 mib", 1 << 20, false},
		{"512KiB", 512 << 10, false},
		{"2GiB", 2 << 30, false},
		{"1MB", 1000 * 1000, false},
		{"10kb", 10000, false},
		{"100B", 100, false},
		{"", 0, true},
		{"-1", 0, true},
		{"1.5MiB", 0, true},
		{"1TiB", 0, true},
		{"99999999999GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c := Default()
	c.TapBodyCap = 1500
	c.Delivery.BackoffBase = Duration(90 * time.Second)
	out, err := yaml.Marshal(c)
	require.NoError(t, err)
	back, err := Parse("marshalled", out)
	require.NoError(t, err)
	assert.Equal(t, c, back)
}

func TestDurationUnmarshalYAMLNamesTheLine(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	err := yaml.Unmarshal([]byte("\n\nd: forever\n"), &v)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 3")
	assert.Contains(t, err.Error(), `invalid duration "forever"`)
}

func TestServerURL(t *testing.T) {
	c := Default()
	assert.Equal(t, "http://127.0.0.1:3000", c.ServerURL())
	c.PublicURL = "https://ocean.example/"
	assert.Equal(t, "https://ocean.example", c.ServerURL())
	u, err := c.UpstreamURL()
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:3000", u.Host)
}
