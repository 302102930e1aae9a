package nomadops

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// ImageError says why an image reference was refused.
type ImageError struct {
	Ref, Reason string
}

func (e *ImageError) Error() string {
	return fmt.Sprintf("image %q is not valid: %s", e.Ref, e.Reason)
}

// The docker reference grammar (distribution/reference).
var (
	pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	hostPattern   = regexp.MustCompile(`^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*$`)
	sha256Hex     = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// Limits of the grammar.
const (
	maxTag  = 128
	maxName = 255
)

// ValidateImage checks an image reference strictly, as
// [registry[:port]/]repository[:tag][@sha256:<64 hex digits>]: a lowercase
// repository path, a tag of at most 128 letters, digits, '_', '.' and '-'
// not starting with '.' or '-', no scheme, no whitespace. The first path
// component is the registry when it has a '.' or a ':' or is localhost,
// as docker decides. The error is an *ImageError saying what is wrong.
func ValidateImage(ref string) error {
	fail := func(format string, args ...any) error {
		return &ImageError{Ref: ref, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case ref == "":
		return fail("it is empty")
	case strings.IndexFunc(ref, unicode.IsSpace) >= 0:
		return fail("it contains whitespace")
	case strings.Contains(ref, "://"):
		return fail("it has a scheme; write registry/repository:tag without %s", ref[:strings.Index(ref, "://")+3])
	case strings.IndexFunc(ref, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) }) >= 0:
		return fail("it has characters other than printable ASCII")
	case strings.Count(ref, "@") > 1:
		return fail("it has more than one '@'")
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest {
		algo, hex, _ := strings.Cut(digest, ":")
		if algo != "sha256" || !sha256Hex.MatchString(hex) {
			return fail("the digest must be sha256: followed by 64 lowercase hex digits")
		}
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		tag := name[i+1:]
		name = name[:i]
		switch {
		case tag == "":
			return fail("the tag after ':' is empty")
		case len(tag) > maxTag:
			return fail("the tag is %d characters long, at most %d are allowed", len(tag), maxTag)
		case !tagPattern.MatchString(tag):
			return fail("the tag %q may only have letters, digits, '_', '.' and '-', and may not start with '.' or '-'", tag)
		}
	}
	if name == "" {
		return fail("the repository is missing")
	}
	if len(name) > maxName {
		return fail("the name is %d characters long, at most %d are allowed", len(name), maxName)
	}
	parts := strings.Split(name, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		host, port, hasPort := strings.Cut(parts[0], ":")
		if !hostPattern.MatchString(host) {
			return fail("the registry %q is not a host name", host)
		}
		if n, err := strconv.Atoi(port); hasPort && (err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n)) {
			return fail("the registry port %q is not a port number", port)
		}
		parts = parts[1:]
	}
	for _, p := range parts {
		switch {
		case p == "":
			return fail("the repository path has an empty component")
		case p != strings.ToLower(p):
			return fail("the repository %q must be lowercase", strings.Join(parts, "/"))
		case !pathComponent.MatchString(p):
			return fail("the repository component %q may only have lowercase letters, digits and single '.', '_' or '__' or dashes between them", p)
		}
	}
	return nil
}
