package sds

import (
	"encoding/json"
	"net/http"
)

// StatusHandler serves Status as JSON: the control plane's
// /debug/identity, which `weft check` reads to compare what the CA holds
// with the Secret (refused material, or an issuer not reread yet).
func (ca *CA) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		// The status line is out; a failed write is the client's loss.
		_ = enc.Encode(ca.Status())
	})
}
