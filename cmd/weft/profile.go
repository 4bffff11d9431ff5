package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/profiles/generate"
)

// profileFlags are `weft profile`'s flags.
type profileFlags struct {
	template      bool
	openAPI       string
	proto         string
	namespace     string
	output        string
	clusterDomain string
	protoPaths    []string
	protoServices []string
}

// newProfileCommand is `weft profile`. It generates; its subcommands
// (validate, explain) check and explain profiles that exist. Cobra picks a
// subcommand by the first argument that is not a flag or a flag's value, so
// `weft profile validate x.yaml` reaches validate while
// `weft profile --open-api api.yaml web` stays here.
func newProfileCommand() *cobra.Command {
	f := &profileFlags{}
	cmd := &cobra.Command{
		Use:   "profile (--template | --open-api FILE | --proto FILE) SERVICE",
		Short: "Write a ServiceProfile for a service: a commented template, or its routes from OpenAPI or protobuf",
		Long: `profile writes a ServiceProfile (linkerd.io/v1alpha2) for the Kubernetes service SERVICE in
namespace -n to stdout, ready for kubectl apply. Its name is
SERVICE.NAMESPACE.svc.<--cluster-domain>. Exactly one of:

  --template         a commented skeleton to edit: one example route, a response class,
                     a timeout, retries and the retry budget, each field explained;
  --open-api FILE    a Swagger 2.0 or OpenAPI 3.x document (YAML or JSON; - reads stdin):
                     one route per path and method, "METHOD /path", the base path (basePath,
                     or the first server's URL path) in front, path parameters matching
                     [^/]*, response classes from the declared statuses (5xx fail), and
                     x-weft-retryable / x-weft-timeout (or Linkerd's x-linkerd-retryable /
                     x-linkerd-timeout) on an operation;
  --proto FILE       a protobuf file: one route per RPC of its services (--proto-service to
                     pick some), "POST /package.Service/Method", retryable when the method's
                     idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS. Imports are found in
                     --proto-path directories (the well-known types need none; no protoc).

Warnings (a route left out, a servers list with several base paths) go to stderr. On an
error nothing is written to stdout and the exit code is 1.`,
		Example: `  weft profile --template web -n shop > web-profile.yaml
  weft profile --open-api openapi.yaml books -n library
  weft profile --proto protos/library/v1/library.proto --proto-path protos library -n library -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, warnings, err := generateProfile(cmd.Context(), f, args[0], cmd.InOrStdin())
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if err != nil {
				return err
			}
			if _, err := cmd.OutOrStdout().Write(out); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.template, "template", false, "write a commented template to start from")
	fl.StringVar(&f.openAPI, "open-api", "", "generate routes from this Swagger 2.0 or OpenAPI 3.x file (- for stdin)")
	fl.StringVar(&f.proto, "proto", "", "generate routes from this protobuf file")
	fl.StringVarP(&f.namespace, "namespace", "n", "default", "namespace of the service")
	fl.StringVarP(&f.output, "output", "o", "yaml", "output format: "+strings.Join(generate.Formats, " or "))
	fl.StringVar(&f.clusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain (cp --cluster-domain)")
	fl.StringSliceVar(&f.protoPaths, "proto-path", nil, "directory to find --proto imports in (repeatable, in order; protoc's -I)")
	fl.StringSliceVar(&f.protoServices, "proto-service", nil, "only this service of the --proto file (name or package.Name; repeatable)")
	cmd.MarkFlagsMutuallyExclusive("template", "open-api", "proto")
	cmd.MarkFlagsOneRequired("template", "open-api", "proto")
	cmd.AddCommand(newProfileValidateCommand(), newProfileExplainCommand())
	return cmd
}

// generateProfile returns the whole output, so that an error leaves
// nothing partial on stdout.
func generateProfile(ctx context.Context, f *profileFlags, service string, stdin io.Reader) ([]byte, []string, error) {
	if !slices.Contains(generate.Formats, f.output) {
		return nil, nil, fmt.Errorf("-o %q: want %s", f.output, strings.Join(generate.Formats, " or "))
	}
	if f.proto == "" && (len(f.protoPaths) > 0 || len(f.protoServices) > 0) {
		return nil, nil, fmt.Errorf("--proto-path and --proto-service go with --proto")
	}
	target := generate.Target{Service: service, Namespace: f.namespace, ClusterDomain: f.clusterDomain}
	var res *generate.Result
	var err error
	switch {
	case f.template && f.output == "yaml":
		// The only form that keeps the comments.
		out, err := generate.Template(target)
		return out, nil, err
	case f.template:
		sp, err := generate.TemplateProfile(target)
		if err != nil {
			return nil, nil, err
		}
		res = &generate.Result{Profile: sp}
	case f.openAPI != "":
		data, name, rerr := readInput(f.openAPI, stdin)
		if rerr != nil {
			return nil, nil, rerr
		}
		res, err = generate.FromOpenAPI(name, data, target)
	default:
		res, err = generate.FromProto(ctx, f.proto, generate.ProtoOptions{ImportPaths: f.protoPaths, Services: f.protoServices}, target)
	}
	if err != nil {
		return nil, nil, err
	}
	out, err := generate.Marshal(res.Profile, f.output)
	return out, res.Warnings, err
}

// readInput reads a file, or stdin for "-".
func readInput(file string, stdin io.Reader) ([]byte, string, error) {
	if file == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, "", fmt.Errorf("reading stdin: %w", err)
		}
		return data, "<stdin>", nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("reading the OpenAPI document: %w", err)
	}
	return data, file, nil
}
