package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// handlerFunc is an endpoint. Returning an error instead of writing one
// keeps the mapping from errors to statuses in one place (fail).
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// requestInfo collects what the request log line reports beyond the
// response status: who called and, for a 5xx, the cause the client is not
// shown.
type requestInfo struct {
	token *store.APIToken
	actor string
	err   error
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return info
	}
	// Only reached when a handler is called outside New's chain (never in
	// production); a throwaway keeps callers free of nil checks.
	return &requestInfo{}
}

// actor names the caller in audit entries and logs.
func actor(ctx context.Context) string {
	if a := infoFrom(ctx).actor; a != "" {
		return a
	}
	return "anonymous"
}

// statusWriter remembers the status written, for the log line and for the
// panic handler, which can only write an error before the header is out.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests writes one log line per request and turns a handler panic
// into a JSON 500, so one bad request never costs more than its own
// response.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		sw := &statusWriter{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				info.err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, codeInternal, "internal error")
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", r.Pattern),
				slog.Int("status", status),
				slog.Duration("duration", time.Since(start)),
				slog.String("actor", actor(r.Context())),
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			if info.err != nil {
				attrs = append(attrs, slog.String("error", info.err.Error()))
			}
			s.log.LogAttrs(r.Context(), level, "request", attrs...)
			if p == http.ErrAbortHandler {
				panic(p)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// jsonFallback serves requests no route matches. The ServeMux answers
// those itself in text/plain; clients of this API expect every error in
// the same JSON shape, so its 404 and 405 are rewritten.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		cw := &captureWriter{header: http.Header{}}
		mux.ServeHTTP(cw, r)
		switch {
		case cw.status == http.StatusMethodNotAllowed:
			w.Header().Set("Allow", cw.header.Get("Allow"))
			writeError(w, cw.status, codeMethodNotAllowed,
				fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path))
		case cw.status >= 300 && cw.status < 400:
			// Path cleaning ("/api//v1" → "/api/v1") redirects; keep that.
			w.Header().Set("Location", cw.header.Get("Location"))
			w.WriteHeader(cw.status)
		default:
			writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no endpoint %s", r.URL.Path))
		}
	})
}

// captureWriter records what the mux's fallback handlers write, discarding
// their text body.
type captureWriter struct {
	header http.Header
	status int
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}

// authorize wraps a route's handler with authentication (for routes that
// need a role) and maps the handler's error to a response.
func (s *server) authorize(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.role != "" {
			tok, err := s.authenticate(r)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			info := infoFrom(r.Context())
			info.token = tok
			info.actor = tok.Name + " (" + tok.ID + ")"
			if !auth.RoleAllows(tok.Role, rt.role) {
				s.fail(w, r, errorf(http.StatusForbidden, codeForbidden,
					"%s %s needs role %s; this token has role %s", rt.method, rt.path, rt.role, tok.Role))
				return
			}
		}
		if err := rt.handler(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

// authenticate resolves the request's bearer token.
func (s *server) authenticate(r *http.Request) (*store.APIToken, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errorf(http.StatusUnauthorized, codeUnauthenticated, "missing Authorization: Bearer <API token> header")
	}
	scheme, secret, ok := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return nil, errorf(http.StatusUnauthorized, codeUnauthenticated, "Authorization header must be \"Bearer <API token>\"")
	}
	tok, err := auth.Authenticate(r.Context(), s.store, secret)
	if errors.Is(err, auth.ErrInvalidToken) {
		return nil, errorf(http.StatusUnauthorized, codeUnauthenticated, "invalid API token")
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	return tok, nil
}
