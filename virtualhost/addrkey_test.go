package virtualhost

import (
	"net"
	"testing"
)

// addrKey's shortcut for TCP addresses gives the key the host:port split gives.
func TestAddrKeyTCP(t *testing.T) {
	split := func(a net.Addr) string {
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String()
		}
		return host
	}
	for _, a := range []*net.TCPAddr{
		{IP: net.IPv4(192, 0, 2, 1), Port: 1883},
		{IP: net.ParseIP("192.0.2.1").To4(), Port: 1},
		{IP: net.ParseIP("2001:db8::1"), Port: 61613},
		{IP: net.ParseIP("fe80::1"), Port: 2, Zone: "eth0"},
		{Port: 3},
	} {
		if got, want := addrKey(a), split(a); got != want {
			t.Errorf("addrKey(%v) = %q, want %q", a, got, want)
		}
	}
	if got := addrKey(&net.UnixAddr{Name: "/tmp/s", Net: "unix"}); got != "/tmp/s" {
		t.Errorf("unix address: %q", got)
	}
	if addrKey(nil) != "" || addrKey((*net.TCPAddr)(nil)) != "" {
		t.Error("a nil address has a key")
	}
}
