package api

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// changeView is one timeline entry: what changed and, in a line a person
// reads, from what to what.
type changeView struct {
	Time    time.Time `json:"time"`
	Seq     uint64    `json:"seq"`
	Kind    string    `json:"kind"`
	Key     string    `json:"key"`
	Op      string    `json:"op"`
	Before  string    `json:"before,omitempty"`
	After   string    `json:"after,omitempty"`
	Summary string    `json:"summary"`
}

// describe is the short state of an item a timeline shows: a package's
// version, a file's hash and mode, a service's state.
func describe(it *commonv1.Item) string {
	if it == nil {
		return ""
	}
	switch b := it.GetBody().(type) {
	case *commonv1.Item_Package:
		return b.Package.GetVersion()
	case *commonv1.Item_File:
		if b.File.GetType() != "file" {
			return b.File.GetType()
		}
		sum := b.File.GetSha256()
		if len(sum) > 12 {
			sum = sum[:12]
		}
		return fmt.Sprintf("sha256:%s mode=%04o owner=%s", sum, b.File.GetMode()&0o7777, b.File.GetOwner())
	case *commonv1.Item_User:
		return fmt.Sprintf("uid=%d shell=%s password=%s", b.User.GetUid(), b.User.GetShell(), b.User.GetPasswordState())
	case *commonv1.Item_Group:
		return fmt.Sprintf("gid=%d members=%v", b.Group.GetGid(), b.Group.GetMembers())
	case *commonv1.Item_Service:
		return b.Service.GetUnitFileState()
	case *commonv1.Item_Os:
		return b.Os.GetPrettyName() + " " + b.Os.GetKernelVersion()
	}
	return hex.EncodeToString(it.GetHash())
}

func newChangeView(c *store.ItemChange) changeView {
	v := changeView{Time: c.Time.UTC(), Seq: c.Seq, Kind: c.Kind, Key: c.Key, Op: c.Op,
		Before: describe(c.Before), After: describe(c.After)}
	switch c.Op {
	case store.ChangeAdded:
		v.Summary = fmt.Sprintf("%s %s added (%s)", c.Kind, c.Key, v.After)
	case store.ChangeRemoved:
		v.Summary = fmt.Sprintf("%s %s removed (was %s)", c.Kind, c.Key, v.Before)
	default:
		v.Summary = fmt.Sprintf("%s %s changed: %s → %s", c.Kind, c.Key, v.Before, v.After)
	}
	return v
}

// handleListChanges serves GET /api/v1/hosts/{id}/changes[?since=RFC3339][&limit=N].
func (s *server) handleListChanges(w http.ResponseWriter, r *http.Request) error {
	h, err := s.getHost(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		if since, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest("since must be an RFC 3339 time")
		}
	}
	limit, err := queryInt(r, "limit", 500, 10000)
	if err != nil {
		return err
	}
	changes, err := s.store.ListChanges(r.Context(), h.ID, since, limit)
	if err != nil {
		return fmt.Errorf("list changes: %w", err)
	}
	out := make([]changeView, 0, len(changes))
	for _, c := range changes {
		out = append(out, newChangeView(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"host_id": h.ID, "changes": out})
	return nil
}
