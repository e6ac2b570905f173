package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable that sets a key.
const EnvPrefix = "OCEANHOOKS_"

// EnvConfigFile names the config file when --config is not given. It is the
// one OCEANHOOKS_ variable that is not a key.
const EnvConfigFile = EnvPrefix + "CONFIG"

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Key is the dotted key ("delivery.maxAttempts"), or the environment
	// variable when that names no key; empty for the file as a whole.
	Key string
	// Source is where the value came from ("oceanhooks.yaml line 12",
	// "env OCEANHOOKS_LISTEN", "flag --listen"); empty for a default.
	Source string
	// Msg says what is wrong.
	Msg string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Source != "" {
		b.WriteString(" (")
		b.WriteString(p.Source)
		b.WriteString(")")
	}
	return b.String()
}

// Error lists every problem found while loading and validating.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		b.WriteString("config: 1 problem:")
	} else {
		fmt.Fprintf(&b, "config: %d problems:", len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Sources are the layers above the defaults, lowest first.
type Sources struct {
	// File is the YAML config file; empty for none.
	File string
	// Environ holds KEY=VALUE pairs as os.Environ returns them; only
	// OCEANHOOKS_ variables are read, and one that names no key is a problem.
	Environ []string
	// Flags maps a dotted key to the value given on the command line, and
	// FlagNames maps the key to the flag's name for messages.
	Flags     map[string]string
	FlagNames map[string]string
}

// Load builds the effective configuration from the defaults and src, then
// validates it. The error, if any, is an *Error listing every problem.
func Load(src Sources) (Config, error) {
	l := loader{cfg: Default(), origin: map[string]string{}}
	if src.File != "" {
		data, err := os.ReadFile(src.File)
		if err != nil {
			l.add(Problem{Msg: fmt.Sprintf("read config file: %v", err)})
		} else {
			l.yaml(src.File, data)
		}
	}
	l.env(src.Environ)
	l.flags(src.Flags, src.FlagNames)
	for _, p := range l.cfg.validate() {
		p.Source = l.origin[p.Key]
		l.add(p)
	}
	if len(l.problems) > 0 {
		return l.cfg, &Error{Problems: l.problems}
	}
	return l.cfg, nil
}

// Parse reads YAML config data over the defaults and validates the result,
// without environment or flags. name labels the data in messages.
func Parse(name string, data []byte) (Config, error) {
	l := loader{cfg: Default(), origin: map[string]string{}}
	l.yaml(name, data)
	for _, p := range l.cfg.validate() {
		p.Source = l.origin[p.Key]
		l.add(p)
	}
	if len(l.problems) > 0 {
		return l.cfg, &Error{Problems: l.problems}
	}
	return l.cfg, nil
}

// Validate checks c and returns an *Error listing every problem, or nil.
func (c Config) Validate() error {
	if ps := c.validate(); len(ps) > 0 {
		return &Error{Problems: ps}
	}
	return nil
}

// field is one settable key of Config.
type field struct {
	key   string // dotted yaml path
	env   string // environment variable
	index []int  // reflect field index path from Config
}

var (
	fieldsOnce sync.Once
	fieldList  []field
	fieldByKey map[string]field
	fieldByEnv map[string]field
)

func fields() []field {
	fieldsOnce.Do(func() {
		fieldList = collect(reflect.TypeFor[Config](), "", nil)
		fieldByKey = map[string]field{}
		fieldByEnv = map[string]field{}
		for _, f := range fieldList {
			fieldByKey[f.key] = f
			fieldByEnv[f.env] = f
		}
	})
	return fieldList
}

func collect(t reflect.Type, prefix string, index []int) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name := yamlName(sf)
		if name == "" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		idx := append(slices.Clone(index), i)
		if isSection(sf.Type) {
			out = append(out, collect(sf.Type, key, idx)...)
			continue
		}
		out = append(out, field{key: key, env: EnvName(key), index: idx})
	}
	return out
}

// Keys returns every dotted key of Config in declaration order.
func Keys() []string {
	var out []string
	for _, f := range fields() {
		out = append(out, f.key)
	}
	return out
}

// EnvName returns the environment variable for a dotted key:
// delivery.maxAttempts → OCEANHOOKS_DELIVERY_MAX_ATTEMPTS, publicURL → OCEANHOOKS_PUBLIC_URL.
func EnvName(key string) string {
	var b strings.Builder
	b.WriteString(EnvPrefix)
	for i, part := range strings.Split(key, ".") {
		if i > 0 {
			b.WriteByte('_')
		}
		rs := []rune(part)
		for j, r := range rs {
			if j > 0 && unicode.IsUpper(r) {
				prev := rs[j-1]
				nextLower := j+1 < len(rs) && unicode.IsLower(rs[j+1])
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
					b.WriteByte('_')
				}
			}
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

func yamlName(sf reflect.StructField) string {
	tag := sf.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	return name
}

// isSection reports whether t is a nested group of keys rather than a value.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

type loader struct {
	cfg      Config
	origin   map[string]string // key → where its value came from
	problems []Problem
}

func (l *loader) add(p Problem) { l.problems = append(l.problems, p) }

func (l *loader) yaml(name string, data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return // an empty file: every default stands
		}
		l.add(Problem{Msg: fmt.Sprintf("%s: %v", name, err)})
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		l.add(Problem{Msg: fmt.Sprintf("%s: want one YAML document, found more", name)})
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return // a file of comments only
	}
	if root.Kind != yaml.MappingNode {
		l.add(Problem{Msg: fmt.Sprintf("want a mapping of keys, got a %s", kindName(root)),
			Source: fmt.Sprintf("%s line %d", name, root.Line)})
		return
	}
	l.mapping(name, root, reflect.ValueOf(&l.cfg).Elem(), "")
}

// mapping sets the fields of struct v from the mapping node n, reporting
// unknown and duplicate keys with their line.
func (l *loader) mapping(file string, n *yaml.Node, v reflect.Value, prefix string) {
	t := v.Type()
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], resolve(n.Content[i+1])
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		src := fmt.Sprintf("%s line %d", file, k.Line)
		if first, dup := seen[k.Value]; dup {
			l.add(Problem{Key: key, Source: src, Msg: fmt.Sprintf("duplicate key (first at line %d)", first)})
			continue
		}
		seen[k.Value] = k.Line
		fi, ok := fieldIndex(t, k.Value)
		if !ok {
			l.add(Problem{Key: key, Source: src, Msg: unknownKeyMsg(t, k.Value)})
			continue
		}
		fv := v.Field(fi)
		if isSection(fv.Type()) {
			switch {
			case val.Kind == yaml.MappingNode:
				l.mapping(file, val, fv, key)
			case val.Kind == yaml.ScalarNode && val.Tag == "!!null":
				// "log:" with nothing under it keeps the defaults.
			default:
				l.add(Problem{Key: key, Source: src, Msg: "want a mapping of keys, got a " + kindName(val)})
			}
			continue
		}
		if err := setYAML(fv, val); err != nil {
			l.add(Problem{Key: key, Source: fmt.Sprintf("%s line %d", file, val.Line), Msg: messageOf(err)})
			continue
		}
		l.origin[key] = src
	}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func fieldIndex(t reflect.Type, name string) (int, bool) {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return i, true
		}
	}
	return 0, false
}

func unknownKeyMsg(t reflect.Type, name string) string {
	var names []string
	for i := range t.NumField() {
		if n := yamlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	if s := closest(name, names); s != "" {
		return fmt.Sprintf("unknown key, did you mean %q?", s)
	}
	return "unknown key; known keys here: " + strings.Join(names, ", ")
}

func messageOf(err error) string {
	var ve *ValueError
	if errors.As(err, &ve) {
		return ve.Msg
	}
	return err.Error()
}

// setYAML sets the leaf v from node n.
func setYAML(v reflect.Value, n *yaml.Node) error {
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		return u.UnmarshalYAML(n)
	}
	if v.Kind() == reflect.Slice {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return &ValueError{Line: n.Line, Msg: "want a list, got a " + kindName(n)}
		}
		items := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			c = resolve(c)
			if c.Kind != yaml.ScalarNode {
				return &ValueError{Line: c.Line, Msg: "want a list of strings, found a " + kindName(c)}
			}
			items = append(items, c.Value)
		}
		v.Set(reflect.ValueOf(items))
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return &ValueError{Line: n.Line, Msg: "want a single value, got a " + kindName(n)}
	}
	value := n.Value
	if n.Tag == "!!null" {
		value = ""
	}
	return setString(v, value)
}

// setString sets the leaf v from its text form (env, flags, YAML scalars).
// Lists are comma-separated.
func setString(v reflect.Value, s string) error {
	switch v.Addr().Interface().(type) {
	case *Duration:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case *ByteSize:
		b, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(b))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(int64(n))
	case reflect.Slice:
		items := []string{}
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

func (l *loader) env(environ []string) {
	fields()
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(name, EnvPrefix) && name != EnvConfigFile {
			vars[name] = value
		}
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	slices.Sort(names)
	envNames := make([]string, 0, len(fieldList))
	for _, f := range fieldList {
		envNames = append(envNames, f.env)
	}
	for _, name := range names {
		f, ok := fieldByEnv[name]
		if !ok {
			msg := "unknown setting"
			if s := closest(name, envNames); s != "" {
				msg = fmt.Sprintf("unknown setting, did you mean %s?", s)
			}
			l.add(Problem{Key: name, Source: "env", Msg: msg})
			continue
		}
		src := "env " + name
		if err := setString(reflect.ValueOf(&l.cfg).Elem().FieldByIndex(f.index), vars[name]); err != nil {
			l.add(Problem{Key: f.key, Source: src, Msg: err.Error()})
			continue
		}
		l.origin[f.key] = src
	}
}

func (l *loader) flags(values, names map[string]string) {
	fields()
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		src := "flag --" + names[key]
		if names[key] == "" {
			src = "flag"
		}
		f, ok := fieldByKey[key]
		if !ok {
			l.add(Problem{Key: key, Source: src, Msg: "unknown key"})
			continue
		}
		if err := setString(reflect.ValueOf(&l.cfg).Elem().FieldByIndex(f.index), values[key]); err != nil {
			l.add(Problem{Key: key, Source: src, Msg: err.Error()})
			continue
		}
		l.origin[key] = src
	}
}

// closest returns the candidate nearest to s by case-insensitive edit
// distance, if that is small (at most 2, or a third of s for long names), else "".
func closest(s string, candidates []string) string {
	best, bestD := "", max(len(s)/3, 2)+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
