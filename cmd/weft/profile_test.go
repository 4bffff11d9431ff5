package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/profiles"
)

// generateTestdata holds the generation goldens (profiles/generate's
// TestGolden writes them); the command must print exactly those bytes.
const generateTestdata = "../../profiles/generate/testdata/"

// runWeft runs the weft command tree with args and returns what it wrote.
func runWeft(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand(func(string) string { return "" }, time.Now)
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func TestProfilePrintsTheGoldens(t *testing.T) {
	stdinDoc, err := os.ReadFile(generateTestdata + "orders.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		args   []string
		stdin  string
		golden string
		// warnings is how many warning lines stderr must have.
		warnings int
	}{
		{"template", []string{"profile", "--template", "books", "-n", "library"}, "", "template.profile.yaml", 0},
		{"swagger 2", []string{"profile", "--open-api", generateTestdata + "bookstore.swagger.json", "bookstore", "-n", "shop"}, "", "bookstore-swagger2.profile.yaml", 0},
		{"openapi 3 from stdin", []string{"profile", "-n", "shop", "--cluster-domain", "example.internal", "--open-api", "-", "orders"}, string(stdinDoc), "orders-openapi3.profile.yaml", 2},
		{"proto", []string{"profile", "--proto", generateTestdata + "proto/library/v1/library.proto", "--proto-path", generateTestdata + "proto", "library", "-n", "books"}, "", "library-proto.profile.yaml", 0},
		{"proto, one service", []string{"profile", "--proto", generateTestdata + "proto/library/v1/library.proto", "--proto-path", generateTestdata + "proto",
			"--proto-service", "library.v1.ShelfService", "shelves", "-n", "books"}, "", "library-proto-shelves.profile.yaml", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, err := os.ReadFile(generateTestdata + c.golden)
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := runWeft(t, c.stdin, c.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if stdout != string(want) {
				t.Errorf("stdout differs from %s:\n%s", c.golden, stdout)
			}
			if n := strings.Count(stderr, "warning: "); n != c.warnings {
				t.Errorf("%d warnings, want %d:\n%s", n, c.warnings, stderr)
			}

			// -o json is the same profile.
			stdoutJSON, _, err := runWeft(t, c.stdin, append(c.args, "-o", "json")...)
			if err != nil {
				t.Fatal(err)
			}
			fromYAML, err := profiles.DecodeServiceProfile([]byte(stdout))
			if err != nil {
				t.Fatal(err)
			}
			fromJSON, err := profiles.DecodeServiceProfile([]byte(stdoutJSON))
			if err != nil {
				t.Fatalf("-o json: %v\n%s", err, stdoutJSON)
			}
			if !strings.HasPrefix(stdoutJSON, "{") || !reflect.DeepEqual(fromJSON, fromYAML) {
				t.Errorf("-o json gives another profile:\n%s", stdoutJSON)
			}
		})
	}
}

// TestProfileBadInput: an error names the file and line, says what was
// expected, and nothing reaches stdout.
func TestProfileBadInput(t *testing.T) {
	bad := generateTestdata + "bad/"
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"neither YAML nor JSON", []string{"--open-api", bad + "not-yaml.txt", "notes"},
			bad + "not-yaml.txt:8:3: neither YAML nor JSON: did not find expected ',' or '}'"},
		{"broken $ref", []string{"--open-api", bad + "broken-ref.swagger.yaml", "notes"},
			bad + `broken-ref.swagger.yaml:24:19: $ref "#/definitions/Notes" does not resolve`},
		{"proto syntax error", []string{"--proto", bad + "syntax-error.proto", "notes"},
			bad + "syntax-error.proto:8:1: syntax error: expecting ';'"},
		{"proto service not defined", []string{"--proto", generateTestdata + "proto/library/v1/library.proto", "--proto-path", generateTestdata + "proto", "--proto-service", "Authors", "notes"},
			generateTestdata + `proto/library/v1/library.proto: no service "Authors"; the file defines library.v1.BookService (line 11)`},
		{"missing file", []string{"--open-api", bad + "nope.yaml", "notes"}, "no such file or directory"},
		{"no mode", []string{"notes"}, "at least one of the flags in the group [template open-api proto] is required"},
		{"two modes", []string{"--template", "--proto", "x.proto", "notes"}, "if any flags in the group [template open-api proto] are set none of the others can be"},
		{"bad service name", []string{"--template", "Notes"}, `service name "Notes"`},
		{"bad output", []string{"--template", "notes", "-o", "xml"}, `-o "xml": want yaml or json`},
		{"proto flags without --proto", []string{"--template", "notes", "--proto-path", "x"}, "--proto-path and --proto-service go with --proto"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, err := runWeft(t, "", append([]string{"profile"}, c.args...)...)
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", stdout)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not say %q", stderr, c.want)
			}
			if stdout != "" {
				t.Errorf("stdout is not empty:\n%s", stdout)
			}
		})
	}
}

// TestProfileSubcommandsAreReached: with subcommands under profile (as
// validate and explain are), the first plain argument naming one runs it,
// and a flag's value or a service name does not.
func TestProfileSubcommandsAreReached(t *testing.T) {
	var ran []string
	stub := func(name string) *cobra.Command {
		return &cobra.Command{Use: name, RunE: func(_ *cobra.Command, args []string) error {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return nil
		}}
	}
	for _, c := range []struct {
		args    []string
		wantRan []string
		stdout  bool
	}{
		{[]string{"validate", "a.yaml", "b.yaml"}, []string{"validate a.yaml b.yaml"}, false},
		{[]string{"explain", "a.yaml"}, []string{"explain a.yaml"}, false},
		{[]string{"--template", "web", "-n", "shop"}, nil, true},
		// A service named like a subcommand comes after --.
		{[]string{"--template", "-n", "shop", "--", "validate"}, nil, true},
		{[]string{"-n", "shop", "--open-api", generateTestdata + "bookstore.swagger.json", "web"}, nil, true},
	} {
		ran = nil
		cmd := newProfileCommand()
		// Stand-ins record what ran, so arguments alone decide it, not the files.
		cmd.RemoveCommand(cmd.Commands()...)
		cmd.AddCommand(stub("validate"), stub("explain"))
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(c.args)
		if err := cmd.ExecuteContext(t.Context()); err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if !reflect.DeepEqual(ran, c.wantRan) {
			t.Errorf("%q ran %q, want %q", c.args, ran, c.wantRan)
		}
		if (out.Len() > 0) != c.stdout {
			t.Errorf("%q: profile wrote %d bytes, want output %v", c.args, out.Len(), c.stdout)
		}
	}
}

// TestProfileExitCode runs the real main in a child process: an error is
// exit code 1 with the message on stderr and nothing on stdout.
func TestProfileExitCode(t *testing.T) {
	bad := generateTestdata + "bad/syntax-error.proto"
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestProfileMainProcess$")
	cmd.Env = append(os.Environ(), "WEFT_TEST_MAIN_ARGS=profile\n--proto\n"+bad+"\nnotes")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want code 1\nstderr:\n%s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout is not empty:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), bad+":8:1: syntax error") {
		t.Errorf("stderr does not name the file and line:\n%s", stderr.String())
	}
}

// TestProfileMainProcess is the child of TestProfileExitCode.
func TestProfileMainProcess(t *testing.T) {
	args := os.Getenv("WEFT_TEST_MAIN_ARGS")
	if args == "" {
		t.Skip("runs only as the child process of TestProfileExitCode")
	}
	os.Args = append([]string{"weft"}, strings.Split(args, "\n")...)
	main()
}
