package generate

import (
	"bytes"
	"fmt"
	"text/template"

	"github.com/weftmesh/weft/profiles"
)

// templateText is the --template skeleton. Every value in it is real (it
// decodes strictly and validates as printed); commented-out lines show the
// rest of the schema.
var templateText = template.Must(template.New("profile").Parse(`# ServiceProfile for {{.Service}}.{{.Namespace}}: how Weft's proxies treat requests to it.
# Edit the routes to match the service, then kubectl apply -f this file.
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  # Always <service>.<namespace>.svc.<cluster domain>: the profile is found by this name.
  name: {{.Name}}
  # The service's own namespace. A copy in a client's namespace applies to
  # that namespace's clients only, and wins over this one for them.
  namespace: {{.Namespace}}
spec:
  # Routes are tried in order; the first whose condition matches a request
  # wins. Requests no route matches fall in [DEFAULT]: no timeout, no retries.
  # Each route has its own stats (success rate, latency) in the proxy.
  routes:
  - name: GET /books/{id}
    # Several fields in one condition must all match.
    condition:
      method: GET
      # An RE2 regular expression the whole path (without the query) must
      # match: ^ and $ are implied. Keep it small: Envoy refuses a regex
      # whose compiled program is larger than 100 instructions.
      pathRegex: /books/[^/]*
      # Conditions combine with all, any and not (up to 4 levels):
      # any:
      # - pathRegex: /books/[^/]*
      # - pathRegex: /authors/[^/]*/books/[^/]*
      # not:
      #   method: DELETE
    # How responses count in the route's stats, and which ones are retried:
    # the first class whose condition matches decides. Without a matching
    # class, 5xx (or a gRPC status other than OK) is a failure.
    responseClasses:
    - condition:
        # An inclusive range of HTTP statuses; a bound left out is open
        # (min: 500 alone is 500 and above), so one status is min = max.
        # Combine with all, any and not like request conditions.
        status:
          min: 500
          max: 599
      isFailure: true
    # Retry failed requests (connection failures and the failures above).
    # Only for requests that are safe to send twice.
    isRetryable: true
    # The most the whole request may take, retries included (a Go duration).
    # There is no timeout unless one is set.
    timeout: 2s
  # Caps retries for all retryable routes together: at most retryRatio
  # retries per request, and always at least minRetriesPerSecond. Envoy
  # counts retries in flight rather than per second (Weft's
  # docs/retry-budgets.md); ttl is checked but has no Envoy equivalent.
  # All three fields are needed when set; these are the defaults that apply
  # without a profile.
  retryBudget:
    retryRatio: 0.2
    minRetriesPerSecond: 10
    ttl: 10s
  # Send a share of the traffic to other services (weights are Kubernetes
  # quantities; 0 sends none). A TrafficSplit for this service replaces it.
  # dstOverrides:
  # - authority: {{.Name}}:80
  #   weight: 900m
  # - authority: {{.Service}}-canary.{{.Namespace}}.svc.{{.ClusterDomain}}:80
  #   weight: 100m
`))

// Template is the commented skeleton of a profile for t, in YAML. It is a
// valid profile as printed, with one example route.
func Template(t Target) ([]byte, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err := templateText.Execute(&b, struct {
		Target
		Name string
	}{t, t.ProfileName()})
	if err != nil {
		return nil, fmt.Errorf("writing the template for %s: %w", t.ProfileName(), err)
	}
	return b.Bytes(), nil
}

// TemplateProfile is Template decoded, for output formats that cannot carry
// comments.
func TemplateProfile(t Target) (*profiles.ServiceProfile, error) {
	y, err := Template(t)
	if err != nil {
		return nil, err
	}
	sp, err := profiles.DecodeServiceProfile(y)
	if err != nil {
		return nil, fmt.Errorf("the template for %s does not decode (a bug in weft profile): %w", t.ProfileName(), err)
	}
	return validated(sp, t)
}
