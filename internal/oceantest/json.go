package oceantest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// object is a JSON object that keeps its key order, so that what the fake
// writes has Ocean's key order (Go maps would sort the keys).
type object struct {
	keys []string
	vals map[string]json.RawMessage
}

func newObject() *object { return &object{vals: map[string]json.RawMessage{}} }

// parseObject reads a JSON object, keeping key order; values are normalised.
func parseObject(raw []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	o := newObject()
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		nv, err := normalize(v)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		o.setRaw(key, nv)
	}
	return o, nil
}

func (o *object) setRaw(key string, v json.RawMessage) {
	if _, ok := o.vals[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.vals[key] = v
}

// set stores v (encoded as JSON) under key; a new key goes last.
func (o *object) set(key string, v any) { o.setRaw(key, encode(v)) }

func (o *object) get(key string) (json.RawMessage, bool) {
	v, ok := o.vals[key]
	return v, ok
}

func (o *object) del(key string) {
	if _, ok := o.vals[key]; !ok {
		return
	}
	delete(o.vals, key)
	for i, k := range o.keys {
		if k == key {
			o.keys = append(o.keys[:i:i], o.keys[i+1:]...)
			break
		}
	}
}

// pick returns a new object with those of keys that o has, in keys' order.
func (o *object) pick(keys []string) *object {
	p := newObject()
	for _, k := range keys {
		if v, ok := o.vals[k]; ok {
			p.setRaw(k, v)
		}
	}
	return p
}

func (o *object) clone() *object {
	c := &object{keys: append([]string(nil), o.keys...), vals: make(map[string]json.RawMessage, len(o.vals))}
	for k, v := range o.vals {
		c.vals[k] = v
	}
	return c
}

// MarshalJSON writes the object compactly in key order.
func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(encode(k))
		b.WriteByte(':')
		b.Write(o.vals[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// encode marshals v like JSON.stringify: compact, no HTML escaping.
func encode(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only values of this package are encoded; they always marshal.
		panic(fmt.Sprintf("oceantest: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// normalize rewrites any JSON value compactly, keeping key order and numbers
// as written, with strings escaped as JSON.stringify does (no HTML escaping).
func normalize(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct {
		obj bool
		n   int
	}
	var (
		b     bytes.Buffer
		stack []frame
	)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		closing := false
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			closing = true
		}
		if len(stack) > 0 && !closing {
			f := &stack[len(stack)-1]
			switch {
			case f.obj && f.n%2 == 1:
				b.WriteByte(':')
			case f.n > 0:
				b.WriteByte(',')
			}
			f.n++
		}
		switch v := tok.(type) {
		case json.Delim:
			b.WriteByte(byte(v))
			if closing {
				stack = stack[:len(stack)-1]
			} else {
				stack = append(stack, frame{obj: v == '{'})
			}
		case string:
			b.Write(encode(v))
		case json.Number:
			b.WriteString(v.String())
		case bool:
			if v {
				b.WriteString("true")
			} else {
				b.WriteString("false")
			}
		case nil:
			b.WriteString("null")
		}
	}
	if len(stack) != 0 || b.Len() == 0 {
		return nil, errors.New("incomplete JSON value")
	}
	return b.Bytes(), nil
}
