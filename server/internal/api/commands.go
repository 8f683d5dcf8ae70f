package api

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

// Limits of command requests.
const (
	defaultCommandDeadline = time.Hour
	maxCommandDeadline     = 7 * 24 * time.Hour
	maxScriptBytes         = 64 << 10
	maxNameLen             = 256
)

// commandRequest is the body of POST /api/v1/hosts/{id}/commands: one
// typed action and the object it acts on.
type commandRequest struct {
	Action   string `json:"action"`
	Deadline string `json:"deadline,omitempty"`
	Package  *struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
		Manager string `json:"manager,omitempty"`
	} `json:"package,omitempty"`
	File *struct {
		Path  string `json:"path"`
		Mode  uint32 `json:"mode,omitempty"`
		Owner string `json:"owner,omitempty"`
		Group string `json:"group,omitempty"`
	} `json:"file,omitempty"`
	Service *struct {
		Name string `json:"name"`
	} `json:"service,omitempty"`
	User *struct {
		Name string `json:"name"`
	} `json:"user,omitempty"`
	Script *struct {
		Interpreter string `json:"interpreter,omitempty"`
		Body        string `json:"body"`
	} `json:"script,omitempty"`
}

func validName(what, s string) error {
	if s == "" {
		return badRequest("%s is required", what)
	}
	if len(s) > maxNameLen || strings.ContainsAny(s, "\x00\n\r") {
		return badRequest("%s is not a valid name", what)
	}
	return nil
}

// command turns the request into the wire command, refusing anything
// that is not exactly one well-formed action.
func (req *commandRequest) command(now time.Time) (*agentv1.Command, error) {
	deadline := defaultCommandDeadline
	if req.Deadline != "" {
		d, err := time.ParseDuration(req.Deadline)
		if err != nil || d <= 0 || d > maxCommandDeadline {
			return nil, badRequest("deadline must be a positive duration up to %s", maxCommandDeadline)
		}
		deadline = d
	}
	objects := 0
	for _, set := range []bool{req.Package != nil, req.File != nil, req.Service != nil, req.User != nil, req.Script != nil} {
		if set {
			objects++
		}
	}
	if objects != 1 {
		return nil, badRequest("give exactly one of package, file, service, user, script")
	}
	cmd := &agentv1.Command{Deadline: timestamppb.New(now.Add(deadline))}
	needs := func(ok bool, what string) error {
		if !ok {
			return badRequest("action %q needs %q", req.Action, what)
		}
		return nil
	}
	switch req.Action {
	case "install_package", "upgrade_package", "remove_package":
		if err := needs(req.Package != nil, "package"); err != nil {
			return nil, err
		}
		if err := validName("package.name", req.Package.Name); err != nil {
			return nil, err
		}
		pa := &agentv1.PackageAction{Name: req.Package.Name, Version: req.Package.Version, Manager: req.Package.Manager}
		switch req.Action {
		case "install_package":
			cmd.Action = &agentv1.Command_InstallPackage{InstallPackage: pa}
		case "upgrade_package":
			cmd.Action = &agentv1.Command_UpgradePackage{UpgradePackage: pa}
		default:
			cmd.Action = &agentv1.Command_RemovePackage{RemovePackage: pa}
		}
	case "restore_file":
		if err := needs(req.File != nil, "file"); err != nil {
			return nil, err
		}
		if !path.IsAbs(req.File.Path) || path.Clean(req.File.Path) != req.File.Path {
			return nil, badRequest("file.path must be a clean absolute path")
		}
		if req.File.Mode > 0o7777 {
			return nil, badRequest("file.mode must be a permission mode (at most 07777)")
		}
		cmd.Action = &agentv1.Command_RestoreFile{RestoreFile: &agentv1.FileAttrs{Path: req.File.Path, Mode: req.File.Mode, Owner: req.File.Owner, Group: req.File.Group}}
	case "enable_service", "disable_service":
		if err := needs(req.Service != nil, "service"); err != nil {
			return nil, err
		}
		if err := validName("service.name", req.Service.Name); err != nil {
			return nil, err
		}
		sa := &agentv1.ServiceAction{Name: req.Service.Name}
		if req.Action == "enable_service" {
			cmd.Action = &agentv1.Command_EnableService{EnableService: sa}
		} else {
			cmd.Action = &agentv1.Command_DisableService{DisableService: sa}
		}
	case "lock_user", "remove_user":
		if err := needs(req.User != nil, "user"); err != nil {
			return nil, err
		}
		if err := validName("user.name", req.User.Name); err != nil {
			return nil, err
		}
		ua := &agentv1.UserAction{Name: req.User.Name}
		if req.Action == "lock_user" {
			cmd.Action = &agentv1.Command_LockUser{LockUser: ua}
		} else {
			cmd.Action = &agentv1.Command_RemoveUser{RemoveUser: ua}
		}
	case "run_script":
		if err := needs(req.Script != nil, "script"); err != nil {
			return nil, err
		}
		if req.Script.Body == "" || len(req.Script.Body) > maxScriptBytes {
			return nil, badRequest("script.body must be 1 to %d bytes", maxScriptBytes)
		}
		cmd.Action = &agentv1.Command_RunScript{RunScript: &agentv1.Script{Interpreter: req.Script.Interpreter, Body: req.Script.Body}}
	case "":
		return nil, badRequest("action is required")
	default:
		return nil, badRequest("unknown action %q", clip(req.Action, 64))
	}
	return cmd, nil
}

func newCommandID() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "c-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// commandView is a command as the API shows it.
type commandView struct {
	*store.Command
	Deadline *time.Time `json:"deadline,omitempty"`
}

func newCommandView(c *store.Command) commandView {
	v := commandView{Command: c}
	if !c.Deadline.IsZero() {
		d := c.Deadline.UTC()
		v.Deadline = &d
	}
	return v
}

// handleCreateCommand serves POST /api/v1/hosts/{id}/commands.
func (s *server) handleCreateCommand(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req commandRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	now := s.now().UTC()
	cmd, err := req.command(now)
	if err != nil {
		return err
	}
	h, err := s.getHost(r, id)
	if err != nil {
		return err
	}
	if h.Revoked {
		return errorf(http.StatusConflict, codeConflict, "host %s is revoked", h.ID)
	}
	cmd.Id = newCommandID()
	payload, err := proto.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode command: %w", err)
	}
	c := &store.Command{
		ID:        cmd.Id,
		HostID:    h.ID,
		Kind:      req.Action,
		Payload:   payload,
		CreatedAt: now,
		CreatedBy: actor(r.Context()),
		Deadline:  cmd.GetDeadline().AsTime(),
		State:     store.CommandPending,
	}
	if err := s.store.CreateCommand(r.Context(), c); err != nil {
		return fmt.Errorf("create command: %w", err)
	}
	detail := map[string]any{"command_id": c.ID, "action": req.Action, "deadline": c.Deadline}
	if req.Script != nil {
		// The script itself is in the command record; the audit log keeps
		// its size so the log stays readable.
		detail["script_bytes"] = len(req.Script.Body)
	}
	if err := s.audit(r, "command.create", "host/"+h.ID, detail); err != nil {
		return err
	}
	s.live.CommandQueued(h.ID, c.ID)
	writeJSON(w, http.StatusCreated, newCommandView(c))
	return nil
}

// handleListCommands serves GET /api/v1/hosts/{id}/commands[?limit=N].
func (s *server) handleListCommands(w http.ResponseWriter, r *http.Request) error {
	h, err := s.getHost(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	cmds, err := s.store.ListCommands(r.Context(), h.ID, limit)
	if err != nil {
		return fmt.Errorf("list commands: %w", err)
	}
	out := make([]commandView, 0, len(cmds))
	for _, c := range cmds {
		out = append(out, newCommandView(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"host_id": h.ID, "commands": out})
	return nil
}

// handleGetCommand serves GET /api/v1/commands/{id}.
func (s *server) handleGetCommand(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c, err := s.store.GetCommand(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "command %s not found", clip(id, 100))
	}
	if err != nil {
		return fmt.Errorf("get command: %w", err)
	}
	writeJSON(w, http.StatusOK, newCommandView(c))
	return nil
}
