package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/tap"
)

// tapFlags are what `weft tap` and `weft top` share: the session they ask
// the control plane for.
type tapFlags struct {
	namespace, to, path, method string
	max                         time.Duration
}

func (f *tapFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "default", "namespace of the target")
	cmd.Flags().StringVar(&f.to, "to", "", "only requests whose :authority starts with this (a service name such as api.shop)")
	cmd.Flags().StringVar(&f.path, "path", "", "only requests whose :path starts with this")
	cmd.Flags().StringVar(&f.method, "method", "", "only requests with this :method")
	cmd.Flags().DurationVar(&f.max, "max", 0, fmt.Sprintf("end the session after this long (0: the control plane's maximum, %s)", tap.MaxDuration))
}

// stream runs a session on target, handing each event to onEvent, and
// returns the session's last line (why it ended).
func (g *globals) stream(ctx context.Context, target string, f tapFlags, onProxies func([]string), onEvent func(tap.Event) error) (tap.Line, error) {
	what := "tap " + target
	c, err := newCPClient(g.cp)
	if err != nil {
		return tap.Line{}, err
	}
	q := url.Values{"namespace": {f.namespace}, "target": {target}}
	for k, v := range map[string]string{"to": f.to, "path": f.path, "method": f.method} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.max > 0 {
		q.Set("max", f.max.String())
	}
	// --timeout bounds the wait for the control plane's answer, not the
	// session, which lasts until it ends or weft is interrupted.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = g.timeout
	defer tr.CloseIdleConnections()
	resp, err := c.do(ctx, tr, c.baseStr+tap.Path+"?"+q.Encode())
	if err != nil {
		return tap.Line{}, c.explain(err, what, tap.Path)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l tap.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return tap.Line{}, fmt.Errorf("%s: the control plane sent an unreadable line %.100q: %w", what, sc.Text(), err)
		}
		switch {
		case l.Event != nil:
			if err := onEvent(*l.Event); err != nil {
				return tap.Line{}, err
			}
		case l.Proxies != nil:
			onProxies(l.Proxies)
		case l.End != "":
			return l, nil
		}
	}
	if ctx.Err() != nil {
		return tap.Line{End: "interrupted"}, nil
	}
	if err := sc.Err(); err != nil {
		return tap.Line{}, fmt.Errorf("%s: reading the session: %w", what, err)
	}
	return tap.Line{}, fmt.Errorf("%s: the control plane ended the session without saying why", what)
}

// reportEnd tells, on stderr, why a session ended and what was lost.
func reportEnd(w io.Writer, l tap.Line) {
	fmt.Fprintln(w, l.Ended("this client"))
}

func newTapCommand(g *globals) *cobra.Command {
	var f tapFlags
	var output string
	cmd := &cobra.Command{
		Use:   "tap KIND/NAME",
		Short: "Watch live requests of meshed pods",
		Long: `tap asks the control plane to switch on access logging in the sidecars of the
target (deploy/NAME, sts/NAME, ds/NAME or pod/NAME) for as long as it runs, and
prints every request in Linkerd's tap format: a req, a rsp and an end line each.
When the last watcher of a proxy leaves (or --max passes) its logger is removed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			end, err := g.stream(cmd.Context(), args[0], f, func(p []string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "tapping %d proxies: %v\n", len(p), p)
			}, func(e tap.Event) error {
				if output == "json" {
					return enc.Encode(e)
				}
				for _, l := range e.Lines() {
					if _, err := fmt.Fprintln(out, l); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			reportEnd(cmd.ErrOrStderr(), end)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (one event per line)")
	return cmd
}

// topOnce is how long top without a terminal gathers before it prints.
const topOnce = 10 * time.Second

func newTopCommand(g *globals) *cobra.Command {
	var f tapFlags
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "top KIND/NAME",
		Short: "Live table of the busiest paths of meshed pods",
		Long: `top watches the same stream as tap and shows, per source, destination, method
and path, the count, best, worst and last latency and the success rate. In a
terminal it redraws every --every; otherwise it gathers for --max (default ` + topOnce.String() + `)
and prints the table once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if every <= 0 {
				return fmt.Errorf("--every %s: want a positive duration", every)
			}
			out := cmd.OutOrStdout()
			terminal := isTerminal(out)
			if !terminal && f.max == 0 {
				f.max = topOnce
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			events := make(chan tap.Event, 256)
			type result struct {
				end tap.Line
				err error
			}
			done := make(chan result, 1)
			go func() {
				end, err := g.stream(ctx, args[0], f, func([]string) {}, func(e tap.Event) error {
					select {
					case events <- e:
					case <-ctx.Done():
					}
					return nil
				})
				done <- result{end, err}
			}()
			top := tap.NewTop()
			var tick <-chan time.Time
			if terminal {
				t := time.NewTicker(every)
				defer t.Stop()
				tick = t.C
			}
			for {
				select {
				case e := <-events:
					top.Add(e)
				case <-tick:
					// Home and clear, then the table: a plain ANSI redraw.
					fmt.Fprint(out, "\x1b[H\x1b[2J")
					if err := top.Write(out); err != nil {
						return err
					}
				case r := <-done:
					for len(events) > 0 {
						top.Add(<-events)
					}
					if r.err != nil {
						return r.err
					}
					if terminal {
						fmt.Fprint(out, "\x1b[H\x1b[2J")
					}
					if err := top.Write(out); err != nil {
						return err
					}
					reportEnd(cmd.ErrOrStderr(), r.end)
					return nil
				}
			}
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&every, "every", time.Second, "how often the table is redrawn in a terminal")
	return cmd
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
