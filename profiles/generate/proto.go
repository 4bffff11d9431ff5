package generate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/weftmesh/weft/profiles"
)

// ProtoOptions says where a proto file's imports are and which of its
// services to describe.
type ProtoOptions struct {
	// ImportPaths are the directories imports are looked up in, in order
	// (protoc's -I). The well-known types (google/protobuf/*.proto) need
	// none.
	ImportPaths []string
	// Services limits the routes to these services of the file (by name,
	// or full name with the package); empty means every service.
	Services []string
}

// maxProtoErrors bounds how many compile errors are reported at once.
const maxProtoErrors = 10

// FromProto generates a profile from the services of a protobuf file: one
// route per RPC, in the file's order, matching gRPC's POST
// /package.Service/Method, retryable when the method's idempotency_level
// is IDEMPOTENT or NO_SIDE_EFFECTS. The file is compiled (imports resolved
// and linked) with protocompile, so no protoc is needed.
func FromProto(ctx context.Context, file string, opts ProtoOptions, t Target) (*Result, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	name, dirs, err := protoName(file, opts.ImportPaths)
	if err != nil {
		return nil, err
	}
	found := &sync.Map{} // import name -> the file it was read from
	found.Store(name, file)
	resolver := protocompile.ResolverFunc(func(name string) (protocompile.SearchResult, error) {
		for _, dir := range dirs {
			p := filepath.Join(dir, filepath.FromSlash(name))
			f, err := os.Open(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return protocompile.SearchResult{}, err
			}
			found.LoadOrStore(name, p)
			return protocompile.SearchResult{Source: f}, nil
		}
		return protocompile.SearchResult{}, fmt.Errorf("%w in %s; give the directory it is under with --proto-path", fs.ErrNotExist, strings.Join(dirs, ", "))
	})
	var compileErrs []error
	compiler := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(resolver),
		SourceInfoMode: protocompile.SourceInfoStandard,
		Reporter: reporter.NewReporter(func(err reporter.ErrorWithPos) error {
			compileErrs = append(compileErrs, protoFileError(err, found))
			if len(compileErrs) == maxProtoErrors {
				return err
			}
			return nil
		}, nil),
	}
	files, err := compiler.Compile(ctx, name)
	if len(compileErrs) > 0 {
		return nil, errors.Join(compileErrs...)
	}
	if err != nil {
		// Failures outside the reporter (an import that is not found)
		// still carry a position.
		var pos reporter.ErrorWithPos
		if errors.As(err, &pos) {
			return nil, protoFileError(pos, found)
		}
		return nil, &FileError{File: file, Msg: err.Error()}
	}
	fd := files[0]
	services, err := selectServices(file, fd, opts.Services)
	if err != nil {
		return nil, err
	}
	sp := newProfile(t)
	var warnings []string
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			path := fmt.Sprintf("/%s/%s", sd.FullName(), md.Name())
			re := regexp.QuoteMeta(path)
			route := "POST " + path
			if size, ok := regexFits(re); !ok {
				warnings = append(warnings, (&FileError{File: file, Line: protoLine(fd, md), Msg: tooBig(route, re, size)}).Error())
				continue
			}
			level := md.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel()
			sp.Spec.Routes = append(sp.Spec.Routes, &profiles.RouteSpec{
				Name:        route,
				Condition:   &profiles.RequestMatch{Method: "POST", PathRegex: re},
				IsRetryable: level == descriptorpb.MethodOptions_IDEMPOTENT || level == descriptorpb.MethodOptions_NO_SIDE_EFFECTS,
			})
		}
	}
	sp, err = validated(sp, t)
	if err != nil {
		return nil, err
	}
	return &Result{Profile: sp, Warnings: warnings}, nil
}

// protoName is the import name to compile file under and the directories
// to resolve names in: the file's name relative to the import path it is
// under, as protoc wants; a file under none is found in its own directory,
// searched first.
func protoName(file string, importPaths []string) (string, []string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", nil, &FileError{File: file, Msg: err.Error()}
	}
	if _, err := os.Stat(abs); err != nil {
		return "", nil, &FileError{File: file, Msg: fmt.Sprintf("reading the proto file: %v", err)}
	}
	for _, dir := range importPaths {
		d, err := filepath.Abs(dir)
		if err != nil {
			return "", nil, fmt.Errorf("--proto-path %s: %w", dir, err)
		}
		if rel, err := filepath.Rel(d, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return filepath.ToSlash(rel), importPaths, nil
		}
	}
	return filepath.Base(abs), append([]string{filepath.Dir(file)}, importPaths...), nil
}

// protoFileError turns a compile error into a FileError on the file as the
// user named it on disk.
func protoFileError(err reporter.ErrorWithPos, found *sync.Map) error {
	pos := err.GetPosition()
	file := pos.Filename
	if p, ok := found.Load(file); ok {
		file = p.(string)
	}
	return &FileError{File: file, Line: pos.Line, Column: pos.Col, Msg: err.Unwrap().Error()}
}

// selectServices is the file's services, or those named in want.
func selectServices(file string, fd protoreflect.FileDescriptor, want []string) ([]protoreflect.ServiceDescriptor, error) {
	all := fd.Services()
	if all.Len() == 0 {
		return nil, &FileError{File: file, Msg: "the file defines no service: want at least one service with rpc methods"}
	}
	var defined []string
	for i := range all.Len() {
		sd := all.Get(i)
		defined = append(defined, fmt.Sprintf("%s (line %d)", sd.FullName(), protoLine(fd, sd)))
	}
	if len(want) == 0 {
		out := make([]protoreflect.ServiceDescriptor, 0, all.Len())
		for i := range all.Len() {
			out = append(out, all.Get(i))
		}
		return out, nil
	}
	var out []protoreflect.ServiceDescriptor
	for _, w := range want {
		var match protoreflect.ServiceDescriptor
		for i := range all.Len() {
			if sd := all.Get(i); string(sd.FullName()) == w || string(sd.Name()) == w {
				match = sd
				break
			}
		}
		if match == nil {
			return nil, &FileError{File: file, Msg: fmt.Sprintf("no service %q; the file defines %s", w, strings.Join(defined, ", "))}
		}
		if !slices.Contains(out, match) {
			out = append(out, match)
		}
	}
	// The file's order, whatever the order of the flags.
	slices.SortFunc(out, func(a, b protoreflect.ServiceDescriptor) int { return a.Index() - b.Index() })
	return out, nil
}

// protoLine is the 1-based line a descriptor starts at (0 when unknown).
func protoLine(fd protoreflect.FileDescriptor, d protoreflect.Descriptor) int {
	loc := fd.SourceLocations().ByDescriptor(d)
	if loc.Path == nil {
		return 0
	}
	return loc.StartLine + 1
}
