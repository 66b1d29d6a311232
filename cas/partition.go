package cas

import (
	"fmt"
	"strings"
)

// Partition says whose an object is: one or more segments separated by
// "/", each matching [A-Za-z0-9_-]+. The first segment is the org id; the
// encryption wrapper adds a key-id segment ("ORG/kKEYID") for sealed data,
// so plain and sealed objects of one org never meet. Deleting a partition
// deletes everything at or below it.
//
// This type is the one home of the partition syntax: backends use it to
// build paths and prefixes, wrappers to find the org of a key.
type Partition string

// partitionSeparator separates the segments of a partition.
const partitionSeparator = "/"

// ValidSegment reports whether s can be one partition segment.
func ValidSegment(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// OrgPartition is the partition of an org's plain data. It fails for an id
// that is not one valid segment.
func OrgPartition(orgID string) (Partition, error) {
	if !ValidSegment(orgID) {
		return "", fmt.Errorf("org id %q is not a valid partition segment: use only A-Z, a-z, 0-9, '_' and '-'", orgID)
	}
	return Partition(orgID), nil
}

// Validate checks the syntax and says what is wrong.
func (p Partition) Validate() error {
	if p == "" {
		return fmt.Errorf("partition is empty; every object needs a partition such as the org id")
	}
	for _, seg := range p.Segments() {
		if seg == "" {
			return fmt.Errorf("partition %q has an empty segment; segments are separated by a single %q", p, partitionSeparator)
		}
		if !ValidSegment(seg) {
			return fmt.Errorf("partition %q has segment %q; segments may only hold A-Z, a-z, 0-9, '_' and '-'", p, seg)
		}
	}
	return nil
}

// Org is the first segment: the org id.
func (p Partition) Org() string {
	org, _, _ := strings.Cut(string(p), partitionSeparator)
	return org
}

// Child is the partition one segment below p. It does not validate
// segment: call Validate on the result where it comes from outside.
func (p Partition) Child(segment string) Partition {
	return p + partitionSeparator + Partition(segment)
}

// Segments splits p into its segments.
func (p Partition) Segments() []string {
	return strings.Split(string(p), partitionSeparator)
}

// Contains reports whether q lies at or below p, segment-wise: "org1"
// contains "org1" and "org1/kX", but not "org10".
func (p Partition) Contains(q Partition) bool {
	return q == p || strings.HasPrefix(string(q), string(p)+partitionSeparator)
}

func (p Partition) String() string { return string(p) }
