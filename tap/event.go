// Package tap is live traffic for `weft tap` and `weft top`: sessions that
// watch named proxies, the gRPC access log service those proxies stream
// their requests to while watched, and the lines and table the CLI prints.
//
// A session does not configure Envoy itself: it puts its proxies in the
// model's tap set (Tapper), and translation adds the access logger to them
// (translate/tap.go). When a proxy's last session ends, the logger goes.
package tap

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/translate"
)

// Event is one request seen by a tapped proxy, as `weft tap` prints it and
// /api/tap streams it (one JSON object per line).
type Event struct {
	// ID is "<session>:<request>", as Linkerd numbers tap lines.
	ID string `json:"id"`
	// Proxy is the node id ("<pod>.<namespace>") of the proxy that logged it.
	Proxy string `json:"proxy"`
	// Direction is "in" (the proxy's pod served it) or "out" (its pod sent it).
	Direction string `json:"direction"`
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	// TLS is "true" or "false": inbound, whether the downstream connection
	// had TLS; outbound, whether the upstream connection the request went
	// over had (translate.TapUpstreamTLSTag). "-" for an outbound request
	// that reached no upstream: there was no connection to say anything of.
	TLS            string        `json:"tls"`
	Method         string        `json:"method"`
	Authority      string        `json:"authority"`
	Path           string        `json:"path"`
	Status         uint32        `json:"status"`
	GRPCStatus     string        `json:"grpcStatus,omitempty"`
	Latency        time.Duration `json:"latency"`
	Duration       time.Duration `json:"duration"`
	ResponseLength uint64        `json:"responseLength"`
	Start          time.Time     `json:"start"`
}

// Success is Linkerd's default classification: no 5xx, and for gRPC an OK
// status.
func (e Event) Success() bool {
	return e.Status < 500 && e.Status != 0 && (e.GRPCStatus == "" || e.GRPCStatus == codes.OK.String())
}

// direction maps the logger's log name (translate's) to a direction.
func direction(logName string) (string, bool) {
	switch logName {
	case translate.TapLogInbound:
		return "in", true
	case translate.TapLogOutbound:
		return "out", true
	}
	return "", false
}

// eventFrom reads one HTTPAccessLogEntry (envoy.data.accesslog.v3,
// api/envoy/data/accesslog/v3/accesslog.proto in Envoy 1.40). The fields
// read: common_properties.{downstream_remote_address,
// downstream_local_address, upstream_remote_address, tls_properties,
// start_time, time_to_first_downstream_tx_byte,
// time_to_last_downstream_tx_byte, custom_tags[TapUpstreamTLSTag]}, request.{request_method, authority,
// path}, response.{response_code, response_body_bytes, response_headers,
// response_trailers}. An entry without common properties or a request is
// refused: nothing it says could be shown as right.
func eventFrom(dir string, e *accesslogdatav3.HTTPAccessLogEntry) (Event, error) {
	c, req, rsp := e.GetCommonProperties(), e.GetRequest(), e.GetResponse()
	if c == nil || req == nil {
		return Event{}, errors.New("entry has no common_properties or no request")
	}
	ev := Event{
		Direction:      dir,
		Src:            addr(c.GetDownstreamRemoteAddress()),
		Dst:            addr(c.GetDownstreamLocalAddress()),
		TLS:            "-",
		Method:         req.GetRequestMethod().String(),
		Authority:      req.GetAuthority(),
		Path:           req.GetPath(),
		Status:         rsp.GetResponseCode().GetValue(),
		ResponseLength: rsp.GetResponseBodyBytes(),
		Latency:        dur(c.GetTimeToFirstDownstreamTxByte()),
	}
	if c.GetStartTime() != nil {
		ev.Start = c.GetStartTime().AsTime()
	}
	if last := dur(c.GetTimeToLastDownstreamTxByte()); last > ev.Latency {
		ev.Duration = last - ev.Latency
	}
	if dir == "out" {
		// The app's connection is to the original destination; the
		// request went to the endpoint the proxy chose.
		if up := addr(c.GetUpstreamRemoteAddress()); up != "" {
			ev.Dst = up
			ev.TLS = strconv.FormatBool(tlsVersion(c.GetCustomTags()[translate.TapUpstreamTLSTag]))
		}
	} else {
		ev.TLS = strconv.FormatBool(c.GetTlsProperties() != nil)
	}
	gs, ok := rsp.GetResponseTrailers()["grpc-status"]
	if !ok {
		gs, ok = rsp.GetResponseHeaders()["grpc-status"]
	}
	if ok {
		n, err := strconv.ParseUint(strings.TrimSpace(gs), 10, 32)
		if err != nil {
			return Event{}, fmt.Errorf("response grpc-status %q is not a number", gs)
		}
		ev.GRPCStatus = codes.Code(n).String()
	}
	return ev, nil
}

// tlsVersion reports whether v is what %UPSTREAM_TLS_VERSION% gives for a
// TLS connection ("TLSv1.2", "TLSv1.3"); "" and "-" are no version.
func tlsVersion(v string) bool {
	return strings.HasPrefix(v, "TLSv")
}

func addr(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		return ""
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

func dur(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

// Lines are the req, rsp and end lines Linkerd's tap prints for one
// request.
func (e Event) Lines() []string {
	head := fmt.Sprintf("id=%s proxy=%s src=%s dst=%s tls=%s", e.ID, e.Direction, e.Src, e.Dst, e.TLS)
	end := fmt.Sprintf("end %s", head)
	if e.GRPCStatus != "" {
		end += " grpc-status=" + e.GRPCStatus
	}
	end += fmt.Sprintf(" duration=%dµs response-length=%dB", e.Duration.Microseconds(), e.ResponseLength)
	return []string{
		fmt.Sprintf("req %s :method=%s :authority=%s :path=%s", head, e.Method, e.Authority, e.Path),
		fmt.Sprintf("rsp %s :status=%d latency=%dµs", head, e.Status, e.Latency.Microseconds()),
		end,
	}
}
