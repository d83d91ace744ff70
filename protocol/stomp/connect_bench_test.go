package stomp

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// BenchmarkConnect measures a new client's whole visit over loopback: dial, CONNECT (STOMP 1.2, no
// heart-beats), CONNECTED, DISCONNECT, close; the client's side is counted too, as it is in connects/s.
// anonymous is the plain path; password a user of a users file at bcrypt cost 4 whose credentials the
// host's cache holds after the first connect.
func BenchmarkConnect(b *testing.B) {
	addr := quietBroker(b)
	b.Run("anonymous", func(b *testing.B) {
		benchConnect(b, addr, "CONNECT\naccept-version:1.2\nhost:default\nheart-beat:0,0\n\n\x00")
	})
	b.Run("password/cached", func(b *testing.B) {
		benchConnect(b, addr, "CONNECT\naccept-version:1.2\nhost:secure\nheart-beat:0,0\nlogin:alice\npasscode:wonderland\n\n\x00")
	})
}

// quietBroker starts a STOMP server logging nothing, with an anonymous host "default" and a host
// "secure" whose users file has alice ("wonderland") and a credential cache.
func quietBroker(b *testing.B) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "users.hcl")
	if err := os.WriteFile(path, []byte(conf.User{Name: "alice", PasswordHash: string(hash)}.Format()), 0o600); err != nil {
		b.Fatal(err)
	}
	def := virtualhost.New(conf.VirtualHost{Name: "default", Anonymous: true}, router.Options{})
	secure := virtualhost.New(conf.VirtualHost{Name: "secure", UsersFile: path, CredentialCache: time.Hour}, router.Options{})
	secure.Throttle = nil // one address, many clients at once: the per-address bound is not what is measured
	reg := virtualhost.NewRegistry(def, secure)
	b.Cleanup(reg.Close)
	h := NewHandler(reg, zap.NewNop())
	h.HeartBeatSend, h.HeartBeatReceive = 0, 0
	_, addrs := prototest.StartServerLog(b, zap.NewNop(), map[string]protocol.Handler{protocol.STOMP: h}, nil, testConnector())
	return addrs[0]
}

func benchConnect(b *testing.B, addr, connect string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		connect, disconnect := []byte(connect), []byte("DISCONNECT\n\n\x00")
		var answer [len("CONNECTED\n")]byte
		for pb.Next() {
			nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = nc.Write(connect)
			if err == nil {
				_, err = io.ReadFull(nc, answer[:]) // the frame is longer: its headers are not read
			}
			if err == nil && string(answer[:]) != "CONNECTED\n" {
				b.Errorf("answer %q", answer)
			}
			if err == nil {
				_, err = nc.Write(disconnect)
			}
			_ = nc.Close()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
}
