package badgerstore_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Backend{Persistent: true, Open: func(dir string, o storetest.Options) (store.Store, error) {
		return badgerstore.Open(dir, badgerstore.Options{FlushDelay: o.FlushDelay, BeforeWrite: o.BeforeWrite})
	}})
}
