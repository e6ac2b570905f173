//go:build linux

package queue

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout is MADV_PAGEOUT (Linux 5.4 and later): reclaim the pages of
// a range now. It never changes what the range holds (a page is read back
// from its file when touched again), unlike MADV_DONTNEED.
const madvPageout = 21

// residentBytes is the process's resident set (VmRSS) and the part of it
// that is file-backed or shared.
func residentBytes() (rss, file int64, err error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("statm: %q", b)
	}
	pages, err1 := strconv.ParseInt(f[1], 10, 64)
	shared, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("statm: %w", err)
	}
	size := int64(os.Getpagesize())
	return pages * size, shared * size, nil
}

// pageOutStore asks the kernel to drop from the resident set the pages of
// every mapping of a table (.sst) or value-log (.vlog) file under dir, and
// returns how many bytes of mappings it covered. Badger maps these files
// whole; the pages it reads or writes stay resident (and count in RSS)
// until the kernel needs the memory, which on a large machine may be never.
func pageOutStore(dir string) (int64, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	prefix := abs + string(filepath.Separator)
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var covered int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if !strings.HasPrefix(path, prefix) || (!strings.HasSuffix(path, ".sst") && !strings.HasSuffix(path, ".vlog")) {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// A mapping may be gone by now (a table deleted): the call then
		// fails with ENOMEM and changes nothing.
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), madvPageout)
		switch {
		case errno == 0:
			covered += int64(end - start)
		case errors.Is(errno, syscall.EINVAL):
			return covered, fmt.Errorf("madvise(MADV_PAGEOUT): %w (Linux 5.4 or later is needed)", errno)
		}
	}
	return covered, sc.Err()
}
