package api

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"google.golang.org/protobuf/encoding/protojson"
)

// Page sizes of the inventory endpoint. A host has a few thousand items;
// the cap keeps one call from building a response of every file hash on a
// host with a huge watch list.
const (
	defaultInventoryLimit = 1000
	maxInventoryLimit     = 10000
)

// bodyJSON encodes item bodies with the proto field names, as the .proto
// documents them, and leaves unset fields out.
var bodyJSON = protojson.MarshalOptions{UseProtoNames: true}

// inventoryResponse is the body of GET /api/v1/hosts/{id}/inventory.
type inventoryResponse struct {
	HostID string `json:"host_id"`
	// Kind is the kind asked for, "" for all.
	Kind string `json:"kind"`
	// Count is how many items match the filters; Items is the page of them
	// from Offset.
	Count  int               `json:"count"`
	Offset int               `json:"offset"`
	Limit  int               `json:"limit"`
	Items  []json.RawMessage `json:"items"`
}

// handleInventory serves GET /api/v1/hosts/{id}/inventory
// [?kind=K][&q=substring][&limit=N][&offset=N].
func (s *server) handleInventory(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	kind := q.Get("kind")
	if kind != "" && !slices.Contains(inventory.Kinds, kind) {
		return badRequest("unknown kind %q; known kinds: %s", clip(kind, 40), strings.Join(inventory.Kinds, ", "))
	}
	limit, err := queryInt(r, "limit", defaultInventoryLimit, maxInventoryLimit)
	if err != nil {
		return err
	}
	offset, err := queryInt(r, "offset", 0, 0)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	items, err := s.store.ListItems(r.Context(), id, kind)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "host %s not found", clip(id, 100))
	}
	if err != nil {
		return fmt.Errorf("list items of host %s: %w", id, err)
	}
	if sub := strings.ToLower(q.Get("q")); sub != "" {
		items = slices.DeleteFunc(items, func(it *commonv1.Item) bool {
			return !strings.Contains(strings.ToLower(it.GetKey()), sub)
		})
	}
	resp := inventoryResponse{
		HostID: id,
		Kind:   kind,
		Count:  len(items),
		Offset: offset,
		Limit:  limit,
		Items:  []json.RawMessage{},
	}
	page := items[min(offset, len(items)):]
	page = page[:min(limit, len(page))]
	for _, it := range page {
		b, err := marshalItem(it)
		if err != nil {
			return err
		}
		resp.Items = append(resp.Items, b)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// marshalItem encodes an item as {"kind","key","hash":hex,<body>:{...}},
// e.g. "package":{"name":...}. The hash is hex rather than protojson's
// base64 so it can be compared with sha256sum output and the agent's logs.
func marshalItem(it *commonv1.Item) (json.RawMessage, error) {
	obj := map[string]any{
		"kind": it.GetKind(),
		"key":  it.GetKey(),
		"hash": hex.EncodeToString(it.GetHash()),
	}
	m := it.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("body")); fd != nil {
		b, err := bodyJSON.Marshal(m.Get(fd).Message().Interface())
		if err != nil {
			return nil, fmt.Errorf("encode item %s/%s: %w", it.GetKind(), it.GetKey(), err)
		}
		obj[string(fd.Name())] = json.RawMessage(b)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode item %s/%s: %w", it.GetKind(), it.GetKey(), err)
	}
	return b, nil
}
