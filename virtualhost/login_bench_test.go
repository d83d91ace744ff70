package virtualhost_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// BenchmarkLogin measures one password login (Host.Login: turn, check, connect permission) at bcrypt
// cost 4 (the tests' users file) and 10 (lyre passwd's default), checked by bcrypt every time and
// served from the credential cache. logins/s is what one host answers to GOMAXPROCS goroutines logging
// in at once from one address, under the host's default login bounds.
func BenchmarkLogin(b *testing.B) {
	for _, cost := range []int{4, bcrypt.DefaultCost} {
		users := usersFileWithCost(b, cost)
		for _, cache := range []time.Duration{0, time.Hour} {
			name := "uncached"
			if cache > 0 {
				name = "cached"
			}
			b.Run(fmt.Sprintf("cost=%d/%s", cost, name), func(b *testing.B) {
				h, err := virtualhost.Open(benchHost(users, cache), router.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer h.Close()
				addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
				if _, _, err := h.Login(addr, "alice", []byte("wonderland"), true, "c"); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					password := []byte("wonderland")
					for pb.Next() {
						if _, _, err := h.Login(addr, "alice", password, true, "c"); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
			})
		}
	}
}

// benchHost is a closed host with the users file users and a credential cache of ttl (0: none).
func benchHost(users string, ttl time.Duration) conf.VirtualHost {
	return conf.VirtualHost{Name: "h", UsersFile: users, CredentialCache: ttl}
}

// usersFileWithCost writes a users file with alice ("wonderland") hashed at bcrypt cost.
func usersFileWithCost(b *testing.B, cost int) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), cost)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "users.hcl")
	if err := os.WriteFile(path, fmt.Appendf(nil, "user \"alice\" {\n  password = %q\n}\n", hash), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}
