package server

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
)

// TestAdminTokenCreatedOnceByConcurrentStarts: processes sharing a data dir
// (sidecars on PostgreSQL) that start at once end with one token: one of them
// creates it, the others read the same, and no temporary file stays behind.
func TestAdminTokenCreatedOnceByConcurrentStarts(t *testing.T) {
	for range 20 {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		const n = 8
		tokens := make([]string, n)
		created := make([]bool, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { tokens[i], created[i], errs[i] = loadAdminToken(cfg) })
		}
		wg.Wait()
		creators := 0
		for i := range n {
			require.NoError(t, errs[i])
			assert.Equal(t, tokens[0], tokens[i])
			if created[i] {
				creators++
			}
		}
		assert.Equal(t, 1, creators, "one start created the token and showed it")
		onDisk, err := ReadAdminToken(filepath.Join(cfg.DataDir, config.AdminTokenFileName))
		require.NoError(t, err)
		assert.Equal(t, tokens[0], onDisk)
		entries, err := os.ReadDir(cfg.DataDir)
		require.NoError(t, err)
		assert.Len(t, entries, 1, "only the token file: %v", entries)
	}
}
