package tap

import "fmt"

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

// Ended says, for a person, why the session of end line l ended and how many
// requests reader (who read the stream: "this client", "the page") missed.
func (l Line) Ended(reader string) string {
	msg := "session ended: " + l.End
	if l.Dropped > 0 {
		msg += fmt.Sprintf("; %d requests not shown (%s read too slowly)", l.Dropped, reader)
	}
	return msg
}
