package netns

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recordingT records what require does to a test instead of doing it: a real Fatal or Skip
// would end the test that checks them.
type recordingT struct {
	testing.TB
	fatal, skip string
}

func (r *recordingT) Helper()                   {}
func (r *recordingT) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...) }
func (r *recordingT) Skip(a ...any)             { r.skip = fmt.Sprint(a...) }

func TestRequireSkipsLocallyAndFailsUnderCI(t *testing.T) {
	noRoot := errors.New("netns: network namespaces need root")
	cases := []struct {
		name        string
		env         map[string]string
		unavailable error
		wantFatal   bool
		wantSkip    bool
	}{
		{name: "available, local", unavailable: nil},
		{name: "available, CI", env: map[string]string{"CI": "true"}, unavailable: nil},
		{name: "unavailable, local", unavailable: noRoot, wantSkip: true},
		{name: "unavailable, CI=true", env: map[string]string{"CI": "true"}, unavailable: noRoot, wantFatal: true},
		{name: "unavailable, CI=1", env: map[string]string{"CI": "1"}, unavailable: noRoot, wantFatal: true},
		{name: "unavailable, CI empty", env: map[string]string{"CI": ""}, unavailable: noRoot, wantSkip: true},
		{name: "unavailable, CI=false", env: map[string]string{"CI": "false"}, unavailable: noRoot, wantSkip: true},
		{name: "unavailable, CI=0", env: map[string]string{"CI": "0"}, unavailable: noRoot, wantSkip: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			r := &recordingT{TB: t}
			require(r, lookup, tc.unavailable)
			if got := r.fatal != ""; got != tc.wantFatal {
				t.Errorf("failed = %v (%q), want %v", got, r.fatal, tc.wantFatal)
			}
			if got := r.skip != ""; got != tc.wantSkip {
				t.Errorf("skipped = %v (%q), want %v", got, r.skip, tc.wantSkip)
			}
			// Either way the reason is in the message.
			for _, msg := range []string{r.fatal, r.skip} {
				if msg != "" && !strings.Contains(msg, noRoot.Error()) {
					t.Errorf("message %q does not give the reason %q", msg, noRoot)
				}
			}
			if tc.wantFatal && !strings.Contains(r.fatal, "CI is set") {
				t.Errorf("failure %q does not say that CI made it one", r.fatal)
			}
		})
	}
}
