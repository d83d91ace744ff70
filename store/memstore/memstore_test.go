package memstore_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/memstore"
	"github.com/lyremq/lyre/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Backend{Open: func(_ string, o storetest.Options) (store.Store, error) {
		return memstore.New(memstore.Options{FlushDelay: o.FlushDelay, BeforeWrite: o.BeforeWrite}), nil
	}})
}
