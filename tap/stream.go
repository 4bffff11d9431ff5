package tap

// Line is one line of /api/tap's stream (newline-delimited JSON). The
// first line names the proxies the session taps; then one line per event;
// the last says why the session ended and how many events were dropped
// because the reader was too slow.
type Line struct {
	Proxies []string `json:"proxies,omitempty"`
	Event   *Event   `json:"event,omitempty"`
	End     string   `json:"end,omitempty"`
	Dropped uint64   `json:"dropped,omitempty"`
}
