package generate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/profiles"
)

// Target is the Kubernetes service a profile describes.
type Target struct {
	Service       string
	Namespace     string
	ClusterDomain string
}

// ProfileName is the name Linkerd and Weft look a service's profile up by:
// <service>.<namespace>.svc.<cluster domain>.
func (t Target) ProfileName() string {
	return fmt.Sprintf("%s.%s.svc.%s", t.Service, t.Namespace, t.ClusterDomain)
}

// check refuses a target whose profile name the control plane would not
// read, before any work is done for it.
func (t Target) check() error {
	if t.ClusterDomain == "" {
		return fmt.Errorf("the cluster domain is empty")
	}
	if _, _, err := profiles.ParseProfileName(t.ProfileName(), t.ClusterDomain); err != nil {
		return fmt.Errorf("profile name %q: %w", t.ProfileName(), err)
	}
	return nil
}

// newProfile is an empty profile for t.
func newProfile(t Target) *profiles.ServiceProfile {
	return &profiles.ServiceProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: profiles.ServiceProfileGroupVersion.String(), Kind: "ServiceProfile"},
		ObjectMeta: metav1.ObjectMeta{Name: t.ProfileName(), Namespace: t.Namespace},
	}
}

// validated returns sp if it passes the validation the control plane
// applies; generation should never produce one that does not, so a failure
// here is reported as what it is.
func validated(sp *profiles.ServiceProfile, t Target) (*profiles.ServiceProfile, error) {
	if errs := profiles.ValidateServiceProfile(sp, t.ClusterDomain); len(errs) > 0 {
		return nil, fmt.Errorf("the generated profile %s is not valid (a bug in weft profile): %w", sp.Name, errs.ToAggregate())
	}
	return sp, nil
}

// Formats are the values Marshal accepts.
var Formats = []string{"yaml", "json"}

// printed is a profile as written out: only the metadata a profile needs
// (ObjectMeta would add creationTimestamp: null), fields in the order of the
// profiles types (name first in a route) rather than sorted.
type printed struct {
	APIVersion string                      `json:"apiVersion"`
	Kind       string                      `json:"kind"`
	Metadata   printedMeta                 `json:"metadata"`
	Spec       profiles.ServiceProfileSpec `json:"spec"`
}

type printedMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// Marshal writes sp as YAML or JSON (format is one of Formats).
func Marshal(sp *profiles.ServiceProfile, format string) ([]byte, error) {
	p := printed{
		APIVersion: sp.APIVersion,
		Kind:       sp.Kind,
		Metadata:   printedMeta{Name: sp.Name, Namespace: sp.Namespace},
		Spec:       sp.Spec,
	}
	j, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding ServiceProfile %s: %w", sp.Name, err)
	}
	switch format {
	case "json":
		return append(j, '\n'), nil
	case "yaml":
		// JSON is YAML: read it back as an ordered map so the YAML keeps
		// the field order, and let the YAML encoder quote what needs it.
		var ordered yamlv2.MapSlice
		if err := yamlv2.Unmarshal(j, &ordered); err != nil {
			return nil, fmt.Errorf("encoding ServiceProfile %s as YAML: %w", sp.Name, err)
		}
		y, err := yamlv2.Marshal(ordered)
		if err != nil {
			return nil, fmt.Errorf("encoding ServiceProfile %s as YAML: %w", sp.Name, err)
		}
		return y, nil
	default:
		return nil, fmt.Errorf("output format %q: want %s", format, strings.Join(Formats, " or "))
	}
}

// FileError is a problem in an input file, at a line when the input has
// lines (0 when it is about the file as a whole).
type FileError struct {
	File   string
	Line   int
	Column int
	Msg    string
}

func (e *FileError) Error() string {
	var b bytes.Buffer
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}
