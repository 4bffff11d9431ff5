package xds

import (
	"context"
	"fmt"
	"log/slog"

	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
)

// gcpLogger routes go-control-plane's printf logging into slog. Its Info
// level says things like "open watch 123 for ..." on every request of every
// proxy, which is debug material at 1,000 proxies, so Info maps to Debug.
type gcpLogger struct{ l *slog.Logger }

var _ gcplog.Logger = gcpLogger{}

func (g gcpLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.log(slog.LevelWarn, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) { g.log(slog.LevelError, format, args) }

func (g gcpLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !g.l.Enabled(ctx, level) {
		return // formatting is the expensive part
	}
	g.l.Log(ctx, level, fmt.Sprintf(format, args...), "component", "go-control-plane")
}
