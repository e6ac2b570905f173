package hooks

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// schema is the subset of JSON Schema that Ocean's endpoint parameter
// definitions use. validate checks a value against it the way Ocean's Ajv
// does (first error only, same keyword order, same schemaPath and message),
// so INVALID_PARAM's info is the one Ocean gives.
type schema struct {
	typ       string // "object", "array", "string", "boolean", "integer"
	nullable  bool
	minLength int // -1: none
	maxLength int // -1: none
	format    string
	enum      []string
	minimum   *int64
	maximum   *int64
	items     *schema
	props     []property // in definition order: Ajv checks them in that order
	required  []string
	def       any // default for a missing property (Ajv useDefaults)
}

type property struct {
	name string
	s    *schema
}

func str(minLen, maxLen int) *schema {
	return &schema{typ: "string", minLength: minLen, maxLength: maxLen}
}

func idParam() *schema {
	return &schema{typ: "string", minLength: -1, maxLength: -1, format: "misskey:id"}
}

func object(required []string, props ...property) *schema {
	return &schema{typ: "object", minLength: -1, maxLength: -1, props: props, required: required}
}

func prop(name string, s *schema) property { return property{name, s} }

// eventTypes is the `on` enum of Ocean: the user types and, for
// administrators only (checked by the endpoint), the report types.
var eventTypes = append(append([]string{}, webhook.UserEventTypes...), webhook.AdminEventTypes...)

func enumOf(values []string) *schema {
	return &schema{typ: "string", minLength: -1, maxLength: -1, enum: values}
}

// invalidParam is Ajv's first error as Ocean reports it.
type invalidParam struct {
	param  string // schemaPath, e.g. "#/properties/name/maxLength"
	reason string // Ajv's message
}

func (e *invalidParam) apiError() *ocean.Error {
	return ocean.ErrInvalidParam.With(map[string]any{"param": e.param, "reason": e.reason})
}

// validate checks v (decoded with UseNumber; nil is JavaScript's undefined)
// against s, filling defaults of missing object properties in place.
func validate(v any, s *schema) *invalidParam {
	return s.check(v, "#")
}

func (s *schema) check(v any, path string) *invalidParam {
	if v == nil && s.nullable {
		return nil
	}
	// Ajv checks the type first, except that a type with keywords of its
	// own is checked inside their group; with one schema type and no
	// untyped keywords besides enum, the first error is the same either way.
	if !s.hasType(v) {
		return &invalidParam{path + "/type", "must be " + s.typ}
	}
	if s.enum != nil {
		if str, _ := v.(string); !slices.Contains(s.enum, str) {
			return &invalidParam{path + "/enum", "must be equal to one of the allowed values"}
		}
	}
	switch s.typ {
	case "string":
		n := utf8.RuneCountInString(v.(string)) // Ajv counts code points
		if s.maxLength >= 0 && n > s.maxLength {
			return &invalidParam{path + "/maxLength", fmt.Sprintf("must NOT have more than %d characters", s.maxLength)}
		}
		if s.minLength >= 0 && n < s.minLength {
			return &invalidParam{path + "/minLength", fmt.Sprintf("must NOT have fewer than %d characters", s.minLength)}
		}
		if s.format == "misskey:id" && !ocean.IsID(v.(string)) {
			return &invalidParam{path + "/format", `must match format "misskey:id"`}
		}
	case "integer":
		n, _ := asInt(v)
		if s.maximum != nil && n > *s.maximum {
			return &invalidParam{path + "/maximum", fmt.Sprintf("must be <= %d", *s.maximum)}
		}
		if s.minimum != nil && n < *s.minimum {
			return &invalidParam{path + "/minimum", fmt.Sprintf("must be >= %d", *s.minimum)}
		}
	case "array":
		if s.items != nil {
			for _, item := range v.([]any) {
				if err := s.items.check(item, path+"/items"); err != nil {
					return err
				}
			}
		}
	case "object":
		m := v.(map[string]any)
		for _, name := range s.required {
			if _, ok := m[name]; !ok {
				if d := s.propSchema(name); d == nil || d.def == nil {
					return &invalidParam{path + "/required", fmt.Sprintf("must have required property '%s'", name)}
				}
			}
		}
		for _, p := range s.props {
			pv, ok := m[p.name]
			if !ok {
				if p.s.def != nil {
					m[p.name] = p.s.def
				}
				continue
			}
			if err := p.s.check(pv, path+"/properties/"+p.name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *schema) propSchema(name string) *schema {
	for _, p := range s.props {
		if p.name == name {
			return p.s
		}
	}
	return nil
}

func (s *schema) hasType(v any) bool {
	switch s.typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "integer":
		_, ok := asInt(v)
		return ok
	}
	return false
}

// asInt reads a JSON number that is an integer (2.0 is one, as in
// JavaScript), saturating beyond int64.
func asInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, true
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f != math.Trunc(f) {
		return 0, false
	}
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64, true
	case f <= math.MinInt64:
		return math.MinInt64, true
	}
	return int64(f), true
}

// Parameter definitions of the endpoints (Ocean's paramDef, property order
// kept; deliveries and redeliver are ours, in the same style).
var (
	paramsCreate = object([]string{"name", "url", "on"},
		prop("name", str(1, 100)),
		prop("url", str(1, 1024)),
		prop("secret", &schema{typ: "string", minLength: -1, maxLength: 1024, def: ""}),
		prop("on", &schema{typ: "array", minLength: -1, maxLength: -1, items: enumOf(eventTypes)}),
	)
	paramsList = object(nil)
	paramsID   = object([]string{"webhookId"}, prop("webhookId", idParam()))
	paramsEdit = object([]string{"webhookId"},
		prop("webhookId", idParam()),
		prop("name", str(1, 100)),
		prop("url", str(1, 1024)),
		prop("secret", &schema{typ: "string", nullable: true, minLength: -1, maxLength: 1024}),
		prop("on", &schema{typ: "array", minLength: -1, maxLength: -1, items: enumOf(eventTypes)}),
		prop("active", &schema{typ: "boolean", minLength: -1, maxLength: -1}),
	)
	paramsTest = object([]string{"webhookId", "type"},
		prop("webhookId", idParam()),
		prop("type", enumOf(eventTypes)),
		prop("override", object(nil,
			prop("url", str(-1, -1)),
			prop("secret", str(-1, -1)),
		)),
	)
	paramsDeliveries = object([]string{"webhookId"},
		prop("webhookId", idParam()),
		prop("limit", &schema{typ: "integer", minLength: -1, maxLength: -1,
			minimum: ptrTo[int64](1), maximum: ptrTo[int64](100), def: json.Number("10")}),
		prop("untilId", idParam()),
	)
	paramsRedeliver = object([]string{"webhookId"},
		prop("webhookId", idParam()),
		prop("deliveryId", idParam()),
	)
)

func ptrTo[T any](v T) *T { return &v }
