package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ValueError is a value that could not be read, with the YAML line it is on
// (0 when it did not come from YAML).
type ValueError struct {
	Line int
	Msg  string
}

func (e *ValueError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Duration is a time.Duration written as a Go duration string ("30s", "2m",
// "168h") in YAML and in the environment.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration reads a Go duration string. A bare number is refused, because
// its unit would be a guess.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as \"30s\", \"2m\" or \"8h\"", s)
	}
	return Duration(v), nil
}

// UnmarshalYAML reads a scalar duration string; the error names the line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &ValueError{Line: n.Line, Msg: "want a duration such as \"30s\", got a " + kindName(n)}
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &ValueError{Line: n.Line, Msg: err.Error()}
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a size in bytes: an integer, or a number with a unit
// (B, KB, MB, GB in powers of 1000; KiB, MiB, GiB in powers of 1024), e.g. "1MiB".
type ByteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so that "KiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"b", 1},
}

// ParseByteSize reads an integer number of bytes or a size such as "512KiB".
func ParseByteSize(s string) (ByteSize, error) {
	raw := s
	s = strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: want bytes as an integer or a size such as \"1MiB\"", raw)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", raw)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML reads an integer or a size string; the error names the line.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &ValueError{Line: n.Line, Msg: "want a size such as 1048576 or \"1MiB\", got a " + kindName(n)}
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return &ValueError{Line: n.Line, Msg: err.Error()}
	}
	*b = v
	return nil
}

// MarshalYAML writes b as a size string when it is a whole number of KiB,
// MiB or GiB, else as an integer.
func (b ByteSize) MarshalYAML() (any, error) {
	for _, u := range []struct {
		name string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.name, nil
		}
	}
	return int64(b), nil
}

func (b ByteSize) String() string {
	v, _ := b.MarshalYAML()
	return fmt.Sprint(v)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	default:
		return "scalar"
	}
}
