// Package pgtest starts throwaway PostgreSQL clusters on loopback for tests
// that need a real PostgreSQL (Ocean's database, a PostgreSQL store). A
// machine without PostgreSQL fails the test, never skips it: CI installs
// Debian's postgresql package (.ci/run).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL cluster of one test.
type Server struct {
	// Port is its loopback TCP port.
	Port int

	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the postmaster exited
	as   *syscall.Credential
}

// startTimeout bounds initdb plus the first accepted connection.
const startTimeout = 60 * time.Second

// Start initialises a cluster in a fresh directory and runs it on a free
// loopback port until the test ends: superuser "postgres", trust
// authentication on loopback only, fsync off (a test's data need not survive
// the machine). As root it runs as the system user "postgres" (PostgreSQL
// refuses root). The binaries are found in $PGTEST_BIN, then on PATH, then
// under /usr/lib/postgresql/<version>/bin (Debian), newest first.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// Not t.TempDir: its parents are private to this user, and the cluster
	// may run as another.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s := &Server{dir: dir, done: make(chan struct{})}
	t.Cleanup(func() {
		s.stop()
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		if s.as, err = postgresUser(); err != nil {
			t.Fatalf("pgtest: running as root: %v", err)
		}
		if err := os.Chown(dir, int(s.as.Uid), int(s.as.Gid)); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := s.command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t)
		err := s.run(filepath.Join(bin, "postgres"), data)
		if err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatalf("pgtest: %v", err)
		}
		// The port may have been taken between freePort and the listen.
	}
}

// run starts the postmaster and waits until it accepts connections.
func (s *Server) run(postgres, data string) error {
	log := filepath.Join(s.dir, "postgres.log")
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if s.as != nil {
		_ = f.Chown(int(s.as.Uid), int(s.as.Gid))
	}
	cmd := s.command(postgres, "-D", data, "-p", strconv.Itoa(s.Port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=40", "-c", "shared_buffers=16MB")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(log)
			return fmt.Errorf("postgres exited: %s", strings.TrimSpace(string(b)))
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("postgres did not accept connections on port %d: %w", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the connection URL of database db as the superuser.
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(t testing.TB, name string) string {
	t.Helper()
	s.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return s.URL(name)
}

// Exec runs SQL statements in database db as the superuser.
func (s *Server) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Stop shuts the cluster down at once (SIGQUIT: immediate shutdown) and
// waits for it; Start arranges it at the end of the test.
func (s *Server) Stop() { s.stop() }

func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// command runs name as the cluster's user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.as != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.as}
		cmd.Dir = s.dir
	}
	return cmd
}

// postgresUser is the system user "postgres", which Debian's package creates.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no user postgres (install Debian's postgresql): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// binDir finds the directory holding initdb and postgres.
func binDir() (string, error) {
	var cands []string
	if d := os.Getenv("PGTEST_BIN"); d != "" {
		cands = append(cands, d)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		cands = append(cands, filepath.Dir(p))
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(debian, func(i, j int) bool { return version(debian[i]) > version(debian[j]) })
	cands = append(cands, debian...)
	for _, d := range cands {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL not found: no initdb and postgres in $PGTEST_BIN, on PATH or under /usr/lib/postgresql/*/bin " +
		"(install Debian's postgresql; .ci/run does)")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
