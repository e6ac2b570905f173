// Package sockpeek looks at a TCP socket without reading from it or
// waiting: one non-blocking MSG_PEEK, for the proxy's two questions — has
// the upstream closed an idle connection, has a client left while its
// request is served.
package sockpeek

// State is what a peek found.
type State int

const (
	// Quiet: nothing to read, the socket is open.
	Quiet State = iota
	// Data: bytes are waiting (not consumed).
	Data
	// Closed: the peer closed its side, or the connection broke.
	Closed
	// Unknown: the socket could not be looked at (not a socket here, or
	// a platform without the peek).
	Unknown
)
