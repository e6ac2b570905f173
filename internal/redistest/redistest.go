// Package redistest starts throwaway redis-server processes on loopback for
// tests that need a real Redis (Ocean's event stream).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	Addr     string // host:port on loopback
	password string // the default user's, when WithPassword set one
	dir      string
	conf     string
	cmd      *exec.Cmd
	t        testing.TB
}

// Option adds to the server's configuration.
type Option func(*Server, *[]string)

// WithConfig adds a configuration directive, e.g. "user …".
func WithConfig(line string) Option {
	return func(_ *Server, c *[]string) { *c = append(*c, line) }
}

// WithPassword requires password of the default user; Do and Publish use it.
func WithPassword(password string) Option {
	return func(s *Server, c *[]string) {
		s.password = password
		*c = append(*c, "requirepass "+password)
	}
}

// Start runs redis-server on a free loopback port until the test ends. A
// machine without redis-server fails the test: CI installs it (.ci/run).
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	port := freePort(t)
	return StartOn(t, port, opts...)
}

// StartOn is Start on a given port (to bring a stopped server back).
func StartOn(t testing.TB, port int, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found (install Debian's redis-server; .ci/run does): %v", err)
	}
	dir := t.TempDir()
	conf := []string{
		"bind 127.0.0.1",
		"port " + strconv.Itoa(port),
		"save \"\"",
		"appendonly no",
		"dir " + dir,
		"logfile \"\"",
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, t: t}
	for _, o := range opts {
		o(s, &conf)
	}
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.conf = path
	s.cmd = exec.Command(bin, path)
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.ping(); err == nil {
			return s
		} else if time.Now().After(deadline) {
			s.Stop()
			t.Fatalf("redistest: redis-server did not answer on %s: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Port is the server's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// URL is redis://Addr.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Stop kills the server (idempotent); subscribers see the connection drop.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// Do sends one command in RESP and returns the first line of the reply.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	cmds := [][]string{args}
	if s.password != "" {
		cmds = [][]string{{"AUTH", s.password}, args}
	}
	for _, cmd := range cmds {
		fmt.Fprintf(&b, "*%d\r\n", len(cmd))
		for _, a := range cmd {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	rd := bufio.NewReader(c)
	var line string
	for range cmds {
		if line, err = rd.ReadString('\n'); err != nil {
			return "", err
		}
		if strings.HasPrefix(line, "-") {
			break
		}
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return line, fmt.Errorf("redis: %s", line[1:])
	}
	return line, nil
}

// Publish publishes msg on channel and returns how many subscribers got it.
func (s *Server) Publish(channel, msg string) (int, error) {
	line, err := s.Do("PUBLISH", channel, msg)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimPrefix(line, ":"))
}

func (s *Server) ping() error {
	line, err := s.Do("PING")
	if err != nil {
		return err
	}
	if line != "+PONG" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}

// FreePort is a loopback TCP port nobody listens on now.
func FreePort(t testing.TB) int { return freePort(t) }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
