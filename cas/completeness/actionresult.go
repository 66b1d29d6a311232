package completeness

import (
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sealcache/sealcache/cas"
)

// MaxActionResultSize bounds a stored ActionResult message. Larger AC
// entries can only be opaque entries of HTTP cache clients.
const MaxActionResultSize = 4 << 20

// ParseActionResult reads data as an ActionResult whose digests are valid
// under fn. It fails for anything else, including bytes that happen to
// parse but carry fields an ActionResult does not have: an HTTP client's
// opaque AC entry (ccache's, say) must not be taken for an ActionResult.
// The same bytes always get the same answer, so the decision made when an
// entry is written holds when it is read.
func ParseActionResult(fn cas.DigestFunction, data []byte) (*repb.ActionResult, error) {
	if len(data) > MaxActionResultSize {
		return nil, fmt.Errorf("%d bytes is larger than an ActionResult may be (%d)", len(data), MaxActionResultSize)
	}
	r := &repb.ActionResult{}
	if err := proto.Unmarshal(data, r); err != nil {
		return nil, err
	}
	if field, ok := firstUnknownField(r.ProtoReflect()); ok {
		return nil, fmt.Errorf("it has fields an ActionResult does not have (in %s)", field)
	}
	if err := ValidateActionResult(fn, r); err != nil {
		return nil, err
	}
	return r, nil
}

// firstUnknownField finds a message, at any depth, with unknown fields.
func firstUnknownField(m protoreflect.Message) (protoreflect.FullName, bool) {
	if len(m.GetUnknown()) > 0 {
		return m.Descriptor().FullName(), true
	}
	var found protoreflect.FullName
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				if name, ok := firstUnknownField(v.List().Get(i).Message()); ok {
					found = name
					return false
				}
			}
		case fd.IsMap():
			return true // ActionResult has no map of messages
		default:
			if name, ok := firstUnknownField(v.Message()); ok {
				found = name
				return false
			}
		}
		return true
	})
	return found, found != ""
}

// ValidateActionResult checks every digest an ActionResult names, so a
// broken entry is refused when written rather than found when read.
func ValidateActionResult(fn cas.DigestFunction, r *repb.ActionResult) error {
	check := func(what string, d *repb.Digest) error {
		if d == nil {
			return nil
		}
		if _, err := cas.FromProto(fn, d); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	for _, f := range r.OutputFiles {
		if f.Path == "" {
			return fmt.Errorf("an output file has no path")
		}
		if f.Digest == nil {
			return fmt.Errorf("output file %q has no digest", f.Path)
		}
		if err := check("output file "+f.Path, f.Digest); err != nil {
			return err
		}
	}
	for _, d := range r.OutputDirectories {
		if d.TreeDigest == nil {
			return fmt.Errorf("output directory %q has no tree_digest", d.Path)
		}
		if err := check("output directory "+d.Path, d.TreeDigest); err != nil {
			return err
		}
	}
	if err := check("stdout_digest", r.StdoutDigest); err != nil {
		return err
	}
	return check("stderr_digest", r.StderrDigest)
}
