package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxBody bounds what is read from the control plane: a node's whole
// configuration is a few MB even for large meshes.
const maxBody = 256 << 20

// cpClient reads the control plane's admin endpoints.
type cpClient struct {
	base    *url.URL
	baseStr string
}

func newCPClient(addr string) (*cpClient, error) {
	raw := strings.TrimSpace(addr)
	if raw == "" {
		return nil, errors.New("--cp is empty: give the control plane's admin address, e.g. " + defaultCP)
	}
	if !strings.Contains(raw, "://") {
		// host:port, as in cp --admin-addr.
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--cp %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--cp %q: scheme %q is not http or https", addr, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("--cp %q: no host", addr)
	}
	// ":9990" (as cp --admin-addr is written) means this machine.
	if strings.HasPrefix(u.Host, ":") {
		u.Host = "127.0.0.1" + u.Host
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &cpClient{base: u, baseStr: u.String()}, nil
}

// fetch GETs path from the control plane at --cp, within --timeout. what
// and endpoint word a failure (see explain).
func (g *globals) fetch(ctx context.Context, path, what, endpoint string) (*cpClient, []byte, error) {
	c, err := newCPClient(g.cp)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	body, err := c.get(ctx, path)
	if err != nil {
		return nil, nil, c.explain(err, what, endpoint)
	}
	return c, body, nil
}

// statusError is a non-200 answer. Message is the server's own error when
// it sent one as JSON ({"error": ...}), else the start of its body.
type statusError struct {
	URL     string
	Code    int
	Message string
	// JSON says whether the server answered with a JSON error, i.e. it is
	// a Weft control plane that understood the request.
	JSON bool
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: %s: %s", e.URL, http.StatusText(e.Code), e.Message)
}

// get fetches path and returns the body of a 200 answer.
func (c *cpClient) get(ctx context.Context, path string) ([]byte, error) {
	u := c.baseStr + path
	// A transport per call, closed after it: weft runs one request and
	// exits, and tests check for leaked goroutines.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	resp, err := c.do(ctx, tr, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	return body, nil
}

// do GETs u with tr and returns a 200 answer, whose body the caller
// closes; any other answer is a *statusError.
func (c *cpClient) do(ctx context.Context, tr *http.Transport, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("building request for %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		// url.Error repeats the method and URL, said better here.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("the control plane at %s did not answer in time (--timeout): %w", c.baseStr, err)
		}
		return nil, fmt.Errorf("cannot reach the control plane at %s (set its admin address with --cp or $%s): %w", c.baseStr, cpEnv, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	se := &statusError{URL: u, Code: resp.StatusCode}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		se.Message, se.JSON = e.Error, true
	} else {
		se.Message = strings.TrimSpace(string(body))
		if len(se.Message) > 200 {
			se.Message = se.Message[:200] + "..."
		}
	}
	return nil, se
}

// explain turns a statusError into what the user should know: the server's
// own message when it gave one, else a hint that the endpoint is missing.
func (c *cpClient) explain(err error, what, endpoint string) error {
	var se *statusError
	if !errors.As(err, &se) {
		return err
	}
	if se.JSON {
		return fmt.Errorf("%s: %s", what, se.Message)
	}
	if se.Code == http.StatusNotFound {
		return fmt.Errorf("%s: the server at %s does not serve %s (HTTP 404: %s); is --cp the admin address of a Weft control plane at least as new as this weft?",
			what, c.baseStr, endpoint, se.Message)
	}
	return fmt.Errorf("%s: %w", what, err)
}
