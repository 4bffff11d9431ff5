package check

import (
	"fmt"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/proxy"
)

// TestRegexSizeAgainstEnvoy: Envoy's documentation quotes 106 for this regex ("RE2 program
// size of 106 > max program size of 100"); the estimate must not be below it (a regex we pass
// must compile in Envoy) nor far above it.
func TestRegexSizeAgainstEnvoy(t *testing.T) {
	const quoted = `^/user/(488/sms|h5/getJwt|captcha|version/getAIDrawTemplate|version/isMainLand|version/promotionTemplate|version/activityTemplate2).*`
	probs := Problems(proxy.Envoy, withRoute(regexRoute(quoted))())
	if len(probs) != 1 {
		t.Fatalf("want one problem, got:\n%s", dump(probs))
	}
	var size int
	if _, err := sscanSize(probs[0].Msg, &size); err != nil {
		t.Fatalf("no size in %q: %v", probs[0].Msg, err)
	}
	if size < 106 || size > 106+106/8 {
		t.Fatalf("estimated %d for a regex Envoy sizes at 106", size)
	}
}

func TestRegexLimits(t *testing.T) {
	limited := func(re string, max uint32) func() *routev3.Route {
		return func() *routev3.Route {
			r := routeTo("c")
			m := &matcherv3.RegexMatcher{Regex: re}
			if max > 0 {
				m.EngineType = &matcherv3.RegexMatcher_GoogleRe2{GoogleRe2: &matcherv3.RegexMatcher_GoogleRE2{MaxProgramSize: wrapperspb.UInt32(max)}}
			}
			r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: m}
			return r
		}
	}
	runRows(t, []row{
		{
			name:    "deprecated per-regex limit",
			bad:     withRoute(limited("/api/[a-z]+", 10)),
			good:    withRoute(limited("/api/[a-z]+", 11)),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].match.safe_regex.regex",
			msg:  "regex '/api/[a-z]+' RE2 program size of 11 > max program size of 10. Increase configured max program size if necessary.",
		},
		{
			name:    "close to the default limit",
			bad:     withRoute(limited("^(alpha|bravo|charlie|delta|echo|foxtrot|golf|hotel|india|juliet|kilo|lima|mike|november|oscar|papa|quebec)$", 0)),
			good:    withRoute(limited("^(alpha|bravo)$", 0)),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].match.safe_regex.regex",
			msg:  "has an estimated RE2 program size of 93", warning: true,
		},
		{
			name:    "Unicode classes are huge in UTF-8",
			bad:     withRoute(limited(`/books/\p{L}+`, 0)),
			good:    withRoute(limited(`/books/[^/]+`, 0)),
			typeURL: resource.RouteType, resName: "rc",
			path: "virtual_hosts[0].routes[0].match.safe_regex.regex",
			msg:  "> max program size of 100 set for the error level threshold",
		},
	})
}

func sscanSize(msg string, size *int) (int, error) {
	const marker = "RE2 program size of "
	i := strings.Index(msg, marker)
	if i < 0 {
		return 0, fmt.Errorf("no %q", marker)
	}
	return fmt.Sscanf(msg[i+len(marker):], "%d", size)
}
