package management_test

import (
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/virtualhost"
)

// Basic auth goes through the host's credential cache: a console or scraper sending the same
// credentials with every request pays bcrypt once; a wrong password still pays it and gets 401; a
// password changed by a reload is refused at once (the manager keeps no cache of its own to empty).
func TestLoginUsesHostCredentialCache(t *testing.T) {
	f := newFixture(t)
	a := f.hosts.Lookup("a")
	if a.Config().CredentialCache <= 0 {
		t.Fatal("the fixture's host a has no credential cache (the configuration file's default)")
	}
	counts := func() (checks, hits uint64) {
		c := a.Counters()
		return c.PasswordChecks, c.CredentialCacheHits
	}
	expectCounts := func(step string, checks, hits uint64) {
		t.Helper()
		if c, h := counts(); c != checks || h != hits {
			t.Fatalf("%s: %d password checks and %d cache hits, want %d and %d", step, c, h, checks, hits)
		}
	}
	get := request{method: "GET", path: "/vhosts/a", user: "tenant"}
	f.expect(get, http.StatusOK, nil)
	expectCounts("first request", 1, 0)
	f.expect(get, http.StatusOK, nil)
	f.expect(get, http.StatusOK, nil)
	expectCounts("two more requests", 1, 2)
	wrong := get
	wrong.pass = "tenant-pw!"
	f.expect(wrong, http.StatusUnauthorized, nil)
	expectCounts("a wrong password", 2, 2)

	// A new password for tenant, applied by a reload as cmd/lyre applies it.
	c := a.Config()
	var users []byte
	for u, pw := range passwords {
		if u == "tenant" {
			pw = "new-pw"
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		users = fmt.Appendf(users, "user %q {\n  password = %q\n  groups = [%q]\n}\n", u, hash, u)
	}
	if err := os.WriteFile(c.UsersFile, users, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Update(c); err != nil {
		t.Fatal(err)
	}
	f.expect(get, http.StatusUnauthorized, nil)
	renewed := get
	renewed.pass = "new-pw"
	f.expect(renewed, http.StatusOK, nil)
	f.expect(renewed, http.StatusOK, nil)
	expectCounts("after the reload", 4, 3)

	// The scrape's own login (ops, not cached yet) is counted before the figures are read.
	ms := prototest.Scrape(t, "http://"+f.addr+"/metrics", "ops", "ops-pw")
	if v := ms.Get(t, "lyre_password_checks_total", "vhost", "a"); v != 5 {
		t.Errorf("lyre_password_checks_total %v, want 5", v)
	}
	if v := ms.Get(t, "lyre_credential_cache_hits_total", "vhost", "a"); v != 3 {
		t.Errorf("lyre_credential_cache_hits_total %v, want 3", v)
	}
}

// A login the host cannot take its turn for (its address still owes the delay its failures earned, longer
// than the host waits) is answered 503 with Retry-After, not 401: the credentials were not checked, so a
// client must retry, not ask its user for other ones (issue 13).
func TestLoginBusyIs503(t *testing.T) {
	f := newFixture(t)
	a := f.hosts.Lookup("a")
	const delay = 2 * time.Second
	a.Throttle = &virtualhost.Throttle{Free: 1, Base: delay, Max: delay, Wait: 10 * time.Millisecond}
	wrong := request{method: "GET", path: "/vhosts/a", user: "tenant", pass: "not-it"}
	f.expect(wrong, http.StatusUnauthorized, nil) // free
	// The second failure earns the delay; its client gives up before the answer, which does not cut it short.
	r, err := http.NewRequest("GET", f.base+"/vhosts/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.SetBasicAuth("tenant", "not-it")
	if _, err := (&http.Client{Timeout: 200 * time.Millisecond}).Do(r); err == nil {
		t.Fatal("the failure earning the delay was answered before it")
	}
	resp := f.send(request{method: "GET", path: "/vhosts/a", user: "tenant"})
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("login within the address's delay: %d, Retry-After %q; want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
