package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// decodeJSON reads the request body into v, which must be a pointer to a
// struct. It enforces everything a hostile or careless client can get
// wrong: the Content-Type, the size limit, exactly one JSON object, no
// fields the endpoint does not know (a typo such as "use" for "uses" must
// not silently fall back to a default).
func (s *server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, codePayloadTooLarge, "request body exceeds %d bytes", tooBig.Limit)
		}
		return badRequest("read request body: %v", err)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return badRequest("request body is empty; expected a JSON object")
	}
	if trimmed[0] != '{' {
		return badRequest("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		return badRequest("unexpected data after the JSON object at byte offset %d", dec.InputOffset())
	}
	return nil
}

// decodeError turns encoding/json's errors into messages that name the
// problem without echoing arbitrary input back.
func decodeError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return badRequest("malformed JSON at byte offset %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("request body must be a JSON object")
		}
		// Value is "number 1e999" and the like; the first word is enough and
		// keeps a megabyte of digits out of the response.
		got, _, _ := strings.Cut(typ.Value, " ")
		return badRequest("field %q must be %s, not a JSON %s", clip(typ.Field, 100), jsonTypeName(typ.Type.Kind().String()), got)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is truncated JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this; its message is stable.
		return badRequest("unknown field %s", clip(strings.TrimPrefix(err.Error(), "json: unknown field "), 100))
	}
	return badRequest("invalid JSON: %v", err)
}

func jsonTypeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case kind == "string":
		return "a string"
	case kind == "map", kind == "struct":
		return "an object"
	case kind == "slice":
		return "an array"
	case kind == "bool":
		return "a boolean"
	}
	return "a " + kind
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badRequest("query parameter %s must be a non-negative integer", name)
	}
	if max > 0 && n > max {
		return 0, badRequest("query parameter %s must be at most %d", name, max)
	}
	return n, nil
}

// clip shortens client-supplied text quoted back in an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
