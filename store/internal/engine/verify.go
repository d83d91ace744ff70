package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/lyremq/lyre/store"
)

// Verify checks the store's internal invariants on one snapshot: every reference count equals the
// references that exist, every counted message has a body and every body a count, and the expiry index
// holds exactly the entries whose message expires. It reads everything; it is for tests and offline
// checks, not for a running broker's hot path.
func (e *Engine) Verify() error {
	return e.view(func(r Reader) error {
		refs := make(map[uint64]uint64)
		index := make(map[string]bool) // expiry keys the entries imply
		var errs []error
		err := r.Scan([]byte{pEntry}, []byte{pEntry}, false, func(k, v []byte) (bool, error) {
			ev, err := decodeEntry(v)
			if err != nil {
				return false, err
			}
			refs[ev.MsgID]++
			if ev.Expires > 0 {
				index[string(keyExpiry(ev.Expires, k))] = true
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		err = r.Scan([]byte{pRetained}, []byte{pRetained}, false, func(_, v []byte) (bool, error) {
			id, err := decodeUvarint(v, "retained")
			refs[id]++
			return err == nil, err
		})
		if err != nil {
			return err
		}
		err = r.Scan([]byte{pExpiry}, []byte{pExpiry}, true, func(k, _ []byte) (bool, error) {
			if !index[string(k)] {
				errs = append(errs, fmt.Errorf("expiry index key %x without its entry", k))
			}
			delete(index, string(k))
			return true, nil
		})
		if err != nil {
			return err
		}
		for k := range index {
			errs = append(errs, fmt.Errorf("entry %x missing from the expiry index", k[9:]))
		}
		counted := make(map[uint64]bool)
		err = r.Scan([]byte{pRefcount}, []byte{pRefcount}, false, func(k, v []byte) (bool, error) {
			id := binary.BigEndian.Uint64(k[1:])
			n, err := decodeUvarint(v, "refcount")
			if err != nil {
				return false, err
			}
			if n != refs[id] {
				errs = append(errs, fmt.Errorf("message %d: count %d, %d references", id, n, refs[id]))
			}
			counted[id] = true
			delete(refs, id)
			return true, nil
		})
		if err != nil {
			return err
		}
		for id, n := range refs {
			errs = append(errs, fmt.Errorf("message %d: %d references, no count", id, n))
		}
		err = r.Scan([]byte{pMessage}, []byte{pMessage}, true, func(k, _ []byte) (bool, error) {
			id := binary.BigEndian.Uint64(k[1:])
			if !counted[id] {
				errs = append(errs, fmt.Errorf("message %d: body without references", id))
			}
			delete(counted, id)
			return true, nil
		})
		if err != nil {
			return err
		}
		for id := range counted {
			errs = append(errs, fmt.Errorf("message %d: counted, no body", id))
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: %w", store.ErrCorrupt, errors.Join(errs...))
		}
		return nil
	})
}
