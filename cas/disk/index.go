package disk

import (
	"container/list"
	"time"

	"github.com/sealcache/sealcache/cas"
)

// entry is what the index knows about one stored object.
type entry struct {
	rel     string // path below DIR/objects
	key     cas.Key
	size    int64
	touched time.Time // last time the file's mtime was set
}

// index is the in-memory LRU index. It is not safe for concurrent use; the
// Store's mutex guards it.
type index struct {
	order  *list.List // of *entry, most recently used at the front
	byPath map[string]*list.Element
	used   int64
	// byOrg adds up sizes per first partition segment (the org), so the
	// settings page and the operator's org list need no directory walk.
	byOrg map[string]int64
}

func newIndex() *index {
	return &index{order: list.New(), byPath: make(map[string]*list.Element), byOrg: make(map[string]int64)}
}

func (ix *index) account(e *entry, sign int64) {
	org := e.key.Partition.Org()
	ix.used += sign * e.size
	ix.byOrg[org] += sign * e.size
	if ix.byOrg[org] == 0 {
		delete(ix.byOrg, org)
	}
}

func (ix *index) len() int { return len(ix.byPath) }

// use moves the object to the front of the LRU order. It returns nil if the
// object is not indexed, and whether the caller should refresh the file's
// mtime (at most once per interval).
func (ix *index) use(rel string, now time.Time, interval time.Duration) (e *entry, refreshMtime bool) {
	el, ok := ix.byPath[rel]
	if !ok {
		return nil, false
	}
	ix.order.MoveToFront(el)
	e = el.Value.(*entry)
	if now.Sub(e.touched) >= interval {
		e.touched = now
		return e, true
	}
	return e, false
}

// addFront inserts e as the most recently used object, replacing any entry
// with the same path.
func (ix *index) addFront(e *entry) {
	ix.remove(e.rel)
	ix.byPath[e.rel] = ix.order.PushFront(e)
	ix.account(e, 1)
}

func (ix *index) remove(rel string) (*entry, bool) {
	el, ok := ix.byPath[rel]
	if !ok {
		return nil, false
	}
	ix.order.Remove(el)
	delete(ix.byPath, rel)
	e := el.Value.(*entry)
	ix.account(e, -1)
	return e, true
}

// oldest returns the least recently used entry, or nil.
func (ix *index) oldest() *entry {
	el := ix.order.Back()
	if el == nil {
		return nil
	}
	return el.Value.(*entry)
}

// each calls fn for every entry, in no particular order.
func (ix *index) each(fn func(*entry)) {
	for _, el := range ix.byPath {
		fn(el.Value.(*entry))
	}
}
