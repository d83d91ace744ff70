package virtualhost

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"

	"github.com/lyremq/lyre/conf"
)

// MethodSCRAMSHA256 is the name of the SCRAM-SHA-256 method, as MQTT 5 clients give it.
const MethodSCRAMSHA256 = "SCRAM-SHA-256"

// scramSaltLength is the salt NewSCRAMCredentials draws, and the shape of fake credentials on a host
// whose users have none.
const scramSaltLength = 16

// SCRAMSHA256 is the server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), checked against the
// scram_sha_256 credentials of the host's users file. Every host where some user has such credentials
// offers it; the zero value is the method as hosts offer it.
type SCRAMSHA256 struct {
	// Nonce returns the server's part of each nonce: printable ASCII without ','. nil draws 24 bytes from
	// crypto/rand, base64-encoded. Tests fix it to replay RFC 7677's example.
	Nonce func() string
}

// Method returns "SCRAM-SHA-256".
func (SCRAMSHA256) Method() string { return MethodSCRAMSHA256 }

// Start begins an exchange against h's users.
func (a SCRAMSHA256) Start(h *Host) AuthExchange {
	x := &scramExchange{}
	// The lookup never fails: a name without credentials gets fake ones, so the exchange goes on exactly
	// as for a wrong password (the library would answer e=unknown-user at once).
	srv, _ := scram.SHA256.NewServer(func(name string) (scram.StoredCredentials, error) {
		c, real := h.scramCredentials(name)
		x.real = real
		return c, nil
	})
	if a.Nonce != nil {
		srv = srv.WithNonceGenerator(a.Nonce)
	}
	x.conv = srv.NewConversation()
	return x
}

// scramExchange is one SCRAM-SHA-256 exchange: client-first in, server-first out; client-final in,
// server-final out and done. Its reader goroutine owns it; it is not safe for concurrent use.
type scramExchange struct {
	conv    *scram.ServerConversation
	real    bool   // the claimed name has SCRAM credentials
	claimed string // the name in client-first
	user    string // the proven name, once done without error
	done    bool
}

func (x *scramExchange) Step(in []byte) ([]byte, bool, error) {
	if x.done {
		return nil, true, ErrAuthEnded
	}
	if !utf8.Valid(in) { // RFC 5802 §5: every message is UTF-8
		return x.fail(scram.ErrInvalidEncoding)
	}
	out, err := x.conv.Step(string(in))
	if err == nil && !x.conv.Done() { // client-first taken, server-first out
		x.claimed = x.conv.Username()
		// An authorization identity would let one user act as another; only the user's own is allowed.
		if a := x.conv.AuthzID(); a != "" && a != x.claimed {
			return x.fail(scram.ErrOtherError)
		}
		return []byte(out), false, nil
	}
	switch {
	case err == nil && x.real:
		x.done, x.user = true, x.claimed
		return []byte(out), true, nil
	case err == nil || out == scram.ErrInvalidProof:
		// A wrong password and a name without credentials end here alike, with the same message and error.
		x.done = true
		return []byte(scram.ErrInvalidProof), true, ErrBadCredentials
	case out == "":
		out = scram.ErrInvalidEncoding // the library leaves a message it cannot parse unanswered
	}
	return x.fail(out)
}

// fail ends the exchange with server-error e ("e=..."), which the error names: it is never about the
// user, only about the message (the proof's failure has its own case in Step).
func (x *scramExchange) fail(e string) ([]byte, bool, error) {
	x.done = true
	return []byte(e), true, fmt.Errorf("%w (%s: %s)", ErrBadCredentials, MethodSCRAMSHA256, e[len("e="):])
}

func (x *scramExchange) User() string { return x.user }

// Claimed returns the user name of the client-first message, proven or not (see ClaimedUser).
func (x *scramExchange) Claimed() string { return x.claimed }

// scramCredentials returns name's SCRAM credentials and true, or fake ones and false for a name that has
// none. Both kinds are computed every time, so the two cost the same.
func (h *Host) scramCredentials(name string) (scram.StoredCredentials, bool) {
	st := h.cur.Load()
	fake := st.fake.credentials(name)
	if len(name) <= MaxUserLength {
		if u, ok := st.users[name]; ok && u.scram != nil {
			return *u.scram, true
		}
	}
	return fake, false
}

// fakeSCRAM makes credentials for names that have none (RFC 5802 §9): derived from a secret and the
// name, the same name always gets the same salt; and each takes the salt length and iteration count of
// a real user picked by the name, so the server-first message of a name that does not exist looks like
// one of a name that does.
type fakeSCRAM struct {
	secret []byte
	shapes []scram.KeyFactors // of the real users, in file order; only len(Salt) and Iters matter
}

// newFakeSCRAM derives the secret from what the users file holds that never leaves the broker (the
// password hashes and SCRAM keys), so fake salts stay the same across restarts and reloads, as real
// ones do; they change only when the file changes. A host without such material draws a random secret.
func newFakeSCRAM(host string, users []conf.User) fakeSCRAM {
	var f fakeSCRAM
	sum := sha256.New()
	sum.Write([]byte("lyre: fake SCRAM credentials\x00" + host + "\x00"))
	material := false
	for _, u := range users {
		for _, b := range [][]byte{[]byte(u.Name), []byte(u.PasswordHash)} {
			sum.Write(binary.AppendUvarint(nil, uint64(len(b))))
			sum.Write(b)
		}
		material = material || u.PasswordHash != ""
		if s := u.SCRAM; s != nil {
			sum.Write(s.StoredKey)
			sum.Write(s.ServerKey)
			f.shapes = append(f.shapes, scram.KeyFactors{Salt: string(make([]byte, len(s.Salt))), Iters: s.Iterations})
			material = true
		}
	}
	f.secret = sum.Sum(nil)
	if !material {
		f.secret = make([]byte, sha256.Size)
		_, _ = rand.Read(f.secret) // never fails (crypto/rand)
	}
	return f
}

func (f *fakeSCRAM) credentials(name string) scram.StoredCredentials {
	const keys = 2 * sha256.Size
	// One expansion gives the shape pick, the salt and both keys; its length does not depend on the name.
	b, err := hkdf.Expand(sha256.New, f.secret, "lyre: fake SCRAM\x00"+name, 8+conf.SCRAMMaxSalt+keys)
	if err != nil {
		panic(err) // only for lengths over 255 hash sizes
	}
	shape := scram.KeyFactors{Salt: string(make([]byte, scramSaltLength)), Iters: conf.SCRAMIterations}
	if len(f.shapes) > 0 {
		shape = f.shapes[binary.BigEndian.Uint64(b)%uint64(len(f.shapes))]
	}
	b = b[8:]
	salt, b := b[:len(shape.Salt)], b[conf.SCRAMMaxSalt:]
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: shape.Iters},
		StoredKey:  b[:sha256.Size],
		ServerKey:  b[sha256.Size:keys],
	}
}

// NewSCRAMCredentials makes the SCRAM-SHA-256 credentials a users file keeps for password: a random salt
// and the keys derived with iterations rounds (RFC 5802 §3). The password is normalised with SASLprep
// (RFC 4013) as SCRAM clients do; a password SASLprep refuses (unassigned code points, for instance)
// cannot be used with SCRAM and is an error.
func NewSCRAMCredentials(password string, iterations int) (*conf.SCRAMCredentials, error) {
	if iterations < conf.SCRAMIterations || iterations > conf.SCRAMMaxIterations {
		return nil, fmt.Errorf("virtualhost: SCRAM iterations must be from %d to %d", conf.SCRAMIterations, conf.SCRAMMaxIterations)
	}
	prepped, err := stringprep.SASLprep.Prepare(password)
	if err != nil {
		// Not err itself: its text quotes the offending character, a piece of the password.
		why := "refused"
		if e, ok := errors.AsType[stringprep.Error](err); ok {
			why = e.Msg
		}
		return nil, fmt.Errorf("virtualhost: the password cannot be used with SCRAM: SASLprep (RFC 4013): %s", why)
	}
	salt := make([]byte, scramSaltLength)
	_, _ = rand.Read(salt) // never fails (crypto/rand)
	return deriveSCRAM(prepped, salt, iterations)
}

// deriveSCRAM computes StoredKey and ServerKey from a normalised password (RFC 5802 §3).
func deriveSCRAM(password string, salt []byte, iterations int) (*conf.SCRAMCredentials, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("virtualhost: SCRAM credentials: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &conf.SCRAMCredentials{
		Salt: salt, Iterations: iterations, StoredKey: stored[:], ServerKey: hmacSHA256(salted, "Server Key"),
	}, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

var _ Authenticator = SCRAMSHA256{}
