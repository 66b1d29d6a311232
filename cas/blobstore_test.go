package cas

import (
	"slices"
	"testing"
)

func TestMarkMissingFindsEachAnsweredKeyOnce(t *testing.T) {
	k := func(h string) Key { return Key{Partition: "org", Kind: KindCAS, Digest: Digest{Hash: h, Size: 1}} }
	a, b, c := k("a"), k("b"), k("c")
	for _, tc := range []struct {
		name    string
		keys    []Key
		missing []Key
		want    []int
	}{
		{"none", []Key{a, b, c}, nil, nil},
		{"in order", []Key{a, b, c}, []Key{a, c}, []int{0, 2}},
		{"duplicates", []Key{a, a, b}, []Key{a, a}, []int{0, 1}},
		{"out of order, as a broken store might answer", []Key{a, b, c}, []Key{c, a}, []int{0, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			MarkMissing(tc.keys, tc.missing, func(i int) { got = append(got, i) })
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("marked %v, want %v", got, tc.want)
			}
		})
	}
}
