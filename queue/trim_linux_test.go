//go:build linux

package queue

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPageOutStoreDropsMappedPages: the pages of the store's mapped value-log
// and table files that were read are dropped from the resident set, and read
// back intact afterwards.
func TestPageOutStoreDropsMappedPages(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	body := strings.Repeat("b", 4<<10) // in the value log
	const n = 8 << 10                  // 32 MiB of values
	for i := 0; i < n; i += 256 {
		require.NoError(t, db.Update(func(txn *badger.Txn) error {
			for j := i; j < i+256; j++ {
				if err := txn.Set([]byte("k"+strconv.Itoa(j)), []byte(body)); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	readAll := func() {
		require.NoError(t, db.View(func(txn *badger.Txn) error {
			for i := range n {
				item, err := txn.Get([]byte("k" + strconv.Itoa(i)))
				require.NoError(t, err)
				require.NoError(t, item.Value(func(v []byte) error {
					require.Equal(t, body, string(v))
					return nil
				}))
			}
			return nil
		}))
	}
	readAll()
	_, before, err := residentBytes()
	require.NoError(t, err)
	covered, err := pageOutStore(dir)
	require.NoError(t, err)
	assert.Greater(t, covered, int64(n*len(body)), "the value log's mappings were covered")
	_, after, err := residentBytes()
	require.NoError(t, err)
	var fs syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &fs))
	if fs.Type != 0x01021994 { // tmpfs pages have nowhere to go without swap
		assert.Less(t, after, before-16<<20, "file-backed resident memory fell by most of what was read")
	}
	readAll() // read back from disk, unchanged
}
