package queue

import "github.com/oceanhooks/oceanhooks/ocean"

// idLen is the length of a delivery id. Delivery ids are Ocean-style aidx ids
// (ocean.IDGen): they sort by creation time, so the newest-first listing and
// its untilId paging follow creation order.
const idLen = ocean.IDLen

// validID reports whether s can be a delivery id (used before a lookup).
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}
