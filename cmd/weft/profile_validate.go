package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/profiles/admission"
	"github.com/weftmesh/weft/translate"
)

func newProfileValidateCommand() *cobra.Command {
	var clusterDomain string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check ServiceProfiles and TrafficSplits offline, as the admission webhook does",
		Long: `validate reads ServiceProfiles and TrafficSplits from YAML or JSON files (- is stdin,
several documents per file) and checks each as the admission webhook would: strict
decoding, every field's value, the name <service>.<namespace>.svc.<cluster domain>,
RE2 regexes within Envoy's size limit, and conditions the control plane can turn into
Envoy routes. It prints every error with its file, document and field path, and exits 1
if there is any; other kinds of objects are skipped. Nothing is sent anywhere.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			docs, err := readManifestFiles(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			return validateDocuments(cmd.OutOrStdout(), docs, admission.Validator{ClusterDomain: clusterDomain})
		},
	}
	cmd.Flags().StringVar(&clusterDomain, "cluster-domain", translate.DefaultClusterDomain, "the cluster's DNS domain, the suffix of profile names")
	return cmd
}

// validateDocuments prints every problem, one per line, or one OK line.
func validateDocuments(w io.Writer, docs []manifestDocument, v admission.Validator) error {
	t := reportProblems(w, docs, v)
	switch {
	case t.invalid > 0:
		return fmt.Errorf("%d of %d objects invalid", t.invalid, t.checked())
	case t.checked() == 0:
		return fmt.Errorf("no ServiceProfile or TrafficSplit found (%s of other kinds)", plural(t.other, "object"))
	}
	summary := fmt.Sprintf("OK: %s, %s", plural(t.profiles, "ServiceProfile"), plural(t.splits, "TrafficSplit"))
	if t.other > 0 {
		summary += fmt.Sprintf(" (%s of other kinds skipped)", plural(t.other, "object"))
	}
	_, err := fmt.Fprintln(w, summary)
	return err
}

// tally counts the documents reportProblems saw.
type tally struct {
	profiles, splits, other, invalid int
}

func (t tally) checked() int { return t.profiles + t.splits }

// reportProblems checks every ServiceProfile and TrafficSplit and writes
// each error and warning on a line of its own, naming the file, the
// document, the object and the field.
func reportProblems(w io.Writer, docs []manifestDocument, v admission.Validator) tally {
	var t tally
	for _, d := range docs {
		verdict := v.Check(d.json)
		switch {
		case verdict.Kind == "ServiceProfile":
			t.profiles++
		case verdict.Kind == "TrafficSplit":
			t.splits++
		case verdict.Err == nil:
			t.other++
			continue
		}
		where := fmt.Sprintf("%s (%s %s)", d.where(), verdict.Kind, verdict.Name)
		for _, warning := range verdict.Warnings {
			fmt.Fprintf(w, "%s: warning: %s\n", where, warning)
		}
		if verdict.OK() {
			continue
		}
		t.invalid++
		if verdict.Err != nil {
			fmt.Fprintf(w, "%s: %v\n", where, verdict.Err)
		}
		for _, e := range verdict.Errors {
			fmt.Fprintf(w, "%s: %v\n", where, e)
		}
	}
	return t
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
