package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// Error codes, the machine-readable half of every error response.
const (
	codeBadRequest           = "bad_request"
	codeUnauthenticated      = "unauthenticated"
	codeForbidden            = "forbidden"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeConflict             = "conflict"
	codePayloadTooLarge      = "payload_too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeNotReady             = "not_ready"
	codeInternal             = "internal"
)

// apiError is an error whose message is meant for the client.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, codeBadRequest, format, args...)
}

// errorResponse is the body of every error: {"error":{"code","message"}}.
type errorResponse struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// fail writes err as a JSON error. Client errors carry their own message;
// anything else is logged with the request and shown as "internal error",
// since store errors can name files and queries the client has no business
// seeing.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		if ae.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="qinfra"`)
		}
		writeError(w, ae.status, ae.code, ae.message)
	case errors.Is(err, store.ErrNotFound):
		// Handlers wrap ErrNotFound with what was not found; an unwrapped one
		// still gets a 404 rather than a 500.
		writeError(w, http.StatusNotFound, codeNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, codeConflict, err.Error())
	case errors.Is(err, store.ErrInvalid):
		// The backend refused input the API's own checks let through.
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this, but the log shows why.
		infoFrom(r.Context()).err = err
		writeError(w, http.StatusServiceUnavailable, codeInternal, "request canceled")
	default:
		infoFrom(r.Context()).err = err
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
	}
}

// writeError writes an error body.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorResponse{Error: errorDetail{Code: code, Message: message}})
}

// writeJSON writes v as the response. Responses are never cached: they are
// live state, and some carry secrets shown once.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a programming error (an unmarshalable type) gets here.
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
