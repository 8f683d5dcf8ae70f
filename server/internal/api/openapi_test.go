package api

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// openAPI is the part of the document the test checks.
type openAPI struct {
	OpenAPI string                                 `json:"openapi"`
	Info    struct{ Title, Version string }        `json:"info"`
	Paths   map[string]map[string]openAPIOperation `json:"paths"`
	Comps   struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string                     `json:"operationId"`
	Role        string                     `json:"x-qinfra-role"`
	Security    []map[string][]string      `json:"security"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openAPI
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	if doc.Info.Title == "" || doc.Info.Version == "" {
		t.Errorf("info.title and info.version are required, got %+v", doc.Info)
	}
	if len(doc.Paths) == 0 {
		t.Fatal("no paths")
	}

	s := &server{}
	inRoutes := map[string]route{}
	for _, rt := range s.routes() {
		inRoutes[rt.pattern()] = rt
	}
	inDoc := map[string]openAPIOperation{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			inDoc[strings.ToUpper(method)+" "+path] = op
		}
	}
	for _, p := range sortedKeys(inRoutes) {
		if _, ok := inDoc[p]; !ok {
			t.Errorf("route %s is not in openapi.json", p)
		}
	}
	ids := map[string]string{}
	for _, p := range sortedKeys(inDoc) {
		op := inDoc[p]
		rt, ok := inRoutes[p]
		if !ok {
			t.Errorf("openapi.json describes %s, which is not a route", p)
			continue
		}
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", p)
		} else if other, dup := ids[op.OperationID]; dup {
			t.Errorf("%s: operationId %s also used by %s", p, op.OperationID, other)
		}
		ids[op.OperationID] = p
		if op.Role != rt.role {
			t.Errorf("%s: x-qinfra-role %q, route needs %q", p, op.Role, rt.role)
		}
		authed := len(op.Security) > 0
		if authed != (rt.role != "") {
			t.Errorf("%s: security %v does not match role %q", p, op.Security, rt.role)
		}
		if rt.role != "" {
			for _, code := range []string{"401", "403"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s: response %s not documented", p, code)
				}
			}
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s: no responses", p)
		}
	}

	// Every $ref must resolve, or generated clients fail in confusing ways.
	var refs []string
	collectRefs(t, openAPIDoc, &refs)
	var generic map[string]any
	_ = json.Unmarshal(openAPIDoc, &generic)
	for _, ref := range refs {
		if !resolves(generic, ref) {
			t.Errorf("$ref %s does not resolve", ref)
		}
	}
}

func collectRefs(t *testing.T, doc []byte, refs *[]string) {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "$ref" {
					*refs = append(*refs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
}

func resolves(doc map[string]any, ref string) bool {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(path, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
