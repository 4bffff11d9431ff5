// Package generate writes ServiceProfiles for `weft profile`: a commented
// template, or one route per operation of an OpenAPI (Swagger 2.0 or
// OpenAPI 3.x) document or per RPC of a protobuf file. It is pure: it reads
// the files it is given and talks to no cluster.
//
// Every profile it returns passes profiles.ValidateServiceProfile, and the
// order of its routes depends only on the input, so generating twice gives
// the same bytes. Errors about an input name the file and, where the input
// has one, the line (see FileError).
package generate
