package queue

import (
	"encoding/binary"
	"strings"
)

// Key prefixes; see the package doc for the layout.
const (
	pRecord  = "q/d/"
	pBody    = "q/b/"
	pHook    = "q/h/"
	pReady   = "q/r/"
	pLease   = "q/l/"
	pExpiry  = "q/x/"
	pAttempt = "q/a/"
	pJob     = "q/j/"
)

// Values of expiry index entries.
const (
	expDelivered = 'd'
	expDead      = 'x'
)

// keepAttempts is how many attempt log entries one delivery keeps (the
// latest; MaxAttempts' default, so a dead letter keeps its whole first run).
const keepAttempts = 10

func keyRecord(id string) []byte { return []byte(pRecord + id) }
func keyBody(id string) []byte   { return []byte(pBody + id) }
func keyLease(id string) []byte  { return []byte(pLease + id) }
func keyJob(hook string) []byte  { return []byte(pJob + hook) }

func hookPrefix(hook string) []byte                     { return []byte(pHook + hook + "/") }
func keyHook(hook, id string) []byte                    { return []byte(pHook + hook + "/" + id) }
func readyPrefix(hook string) []byte                    { return []byte(pReady + hook + "/") }
func attemptPrefix(id string) []byte                    { return []byte(pAttempt + id + "/") }
func keyExpiry(at int64, id string) []byte              { return withTime(pExpiry, at, id) }
func keyReady(hook string, due int64, id string) []byte { return withTime(pReady+hook+"/", due, id) }

func keyAttempt(id string, n int) []byte {
	k := append(attemptPrefix(id), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(k[len(k)-4:], uint32(n))
	return k
}

// withTime appends a big-endian unix-ms time (clamped at 0) and an id.
func withTime(prefix string, ms int64, id string) []byte {
	k := make([]byte, 0, len(prefix)+8+len(id))
	k = append(k, prefix...)
	k = binary.BigEndian.AppendUint64(k, uint64(max(ms, 0)))
	return append(k, id...)
}

// splitTimed parses the tail <ms:8><id> of a ready or expiry key.
func splitTimed(key []byte, prefixLen int) (ms int64, id string, ok bool) {
	if len(key) != prefixLen+8+idLen {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(key[prefixLen:])), string(key[prefixLen+8:]), true
}

// parseReady splits q/r/<hook>/<due><id>.
func parseReady(key []byte) (hook string, due int64, id string, ok bool) {
	rest := key[len(pReady):]
	if len(rest) < 1+1+8+idLen {
		return "", 0, "", false
	}
	hook = string(rest[:len(rest)-1-8-idLen])
	if rest[len(hook)] != '/' {
		return "", 0, "", false
	}
	due, id, ok = splitTimed(key, len(pReady)+len(hook)+1)
	return hook, due, id, ok
}

// validHookID reports whether a hook id can be part of a key: Ocean ids are
// alphanumeric, and a slash would make one hook's prefix cover another's.
func validHookID(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/\xff")
}
