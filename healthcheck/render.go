package healthcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText writes a report as `linkerd check` does: a category, a rule
// under it, a line per check, and under a problem its error and hint.
func WriteText(w io.Writer, rep Report) error {
	var b strings.Builder
	for _, c := range rep.Categories {
		fmt.Fprintf(&b, "%s\n%s\n", c.Name, strings.Repeat("-", len(c.Name)))
		for _, ch := range c.Checks {
			fmt.Fprintf(&b, "%s %s\n", ch.Result.Symbol(), ch.Description)
			if ch.Result == StatusSuccess {
				continue
			}
			for _, line := range strings.Split(ch.Error, "\n") {
				fmt.Fprintf(&b, "    %s\n", line)
			}
			fmt.Fprintf(&b, "    see %s for hints\n", ch.Hint)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Status check results are %s\n", map[bool]string{true: "√", false: "×"}[rep.Success])
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the check report: %w", err)
	}
	return nil
}

// WriteJSON writes a report in `linkerd check -o json`'s shape.
func WriteJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("writing the check report: %w", err)
	}
	return nil
}

// Summary is one line for a progress indicator: how many checks fail and
// the first of them.
func Summary(rep Report) string {
	for _, c := range rep.Categories {
		for _, ch := range c.Checks {
			if ch.Result == StatusError {
				return fmt.Sprintf("%d failing, first: %s: %s", rep.Failing(), c.Name, ch.Description)
			}
		}
	}
	return "all passing"
}
