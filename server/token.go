package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/oceanhooks/oceanhooks/config"
)

const (
	// adminTokenBytes is how many random bytes a generated admin token
	// holds (written as hex).
	adminTokenBytes = 32
	// minAdminTokenLen is the fewest characters a token file may hold.
	minAdminTokenLen = 32
)

// ReadAdminToken reads the admin listener's bearer token from path: the
// file's content with surrounding whitespace trimmed. It refuses a file that
// group or others may read or write, and a token shorter than 32 characters
// or with characters other than visible ASCII. Errors name the file, never
// its content.
func ReadAdminToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("admin token file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s is open to group or others (mode %04o): make it readable by its owner only (chmod 600)", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if len(token) < minAdminTokenLen {
		return "", fmt.Errorf("admin token file %s: the token must have at least %d characters", path, minAdminTokenLen)
	}
	for _, c := range []byte(token) {
		if c <= ' ' || c > '~' {
			return "", fmt.Errorf("admin token file %s: the token must be visible ASCII characters only, on one line", path)
		}
	}
	return token, nil
}

// loadAdminToken returns cfg's admin token. With admin.tokenFile set, that
// file must hold it. Otherwise the token is read from the data dir, and on
// the first start it is generated there (mode 0600); created reports that,
// so that the caller shows it once. The data dir must exist. Processes
// sharing it (sidecars on PostgreSQL) may start at once: one creates the
// token and the others read it.
func loadAdminToken(cfg config.Config) (token string, created bool, err error) {
	path := cfg.AdminTokenPath()
	if cfg.Admin.TokenFile != "" {
		token, err = ReadAdminToken(path)
		return token, false, err
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		token, err = ReadAdminToken(path)
		return token, false, err
	}
	token, err = createAdminToken(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process sharing the data dir created it first.
		token, err = ReadAdminToken(path)
		return token, false, err
	}
	if err != nil {
		return "", false, err
	}
	return token, true, nil
}

// createAdminToken writes a new random token to path (mode 0600) through a
// temporary file of its own linked into place, so that a crash leaves
// either no token file or a whole one, and of two processes creating it at
// once one wins and the other gets an error wrapping fs.ErrExist.
func createAdminToken(path string) (string, error) {
	raw := make([]byte, adminTokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	token := hex.EncodeToString(raw)
	// A crash before the link leaves this file behind: a token never used.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return "", fmt.Errorf("create admin token file: %w", err)
	}
	tmp := f.Name()
	_, err = f.WriteString(token + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Unlike a rename, a link never replaces a token another process
		// wrote meanwhile.
		err = os.Link(tmp, path)
	}
	_ = os.Remove(tmp)
	if err != nil {
		return "", fmt.Errorf("write admin token file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return token, nil
}
