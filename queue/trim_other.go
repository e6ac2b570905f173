//go:build !linux

package queue

import "errors"

var errNoTrim = errors.New("keeping the store's mapped files out of the resident set needs Linux")

func residentBytes() (int64, int64, error) { return 0, 0, errNoTrim }
func pageOutStore(string) (int64, error)   { return 0, errNoTrim }
