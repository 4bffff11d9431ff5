package healthcheck

import (
	"context"
	"os"
	"strings"
	"testing"
)

// Every hint points at a heading of docs/check.md.
func TestHintAnchorsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/check.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{{Pre: true}, {Proxy: true, Admin: adminFunc(nil)}} {
		r := &run{cfg: cfg}
		for _, c := range r.categories() {
			for _, ch := range c.checks {
				if !strings.Contains(string(doc), "\n### "+ch.anchor+"\n") {
					t.Errorf("%s: %q: docs/check.md has no heading %q", c.name, ch.description, ch.anchor)
				}
			}
		}
	}
}

type adminFunc func(string) ([]byte, error)

func (f adminFunc) Get(_ context.Context, path string) ([]byte, error) { return f(path) }
