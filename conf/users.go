package conf

import (
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// User is one entry of a virtual host's users file:
//
//	user "alice" {
//	  password = "$2a$10$..."       # bcrypt hash, as printed by `lyre passwd`
//	  scram_sha_256 {               # optional, as printed by `lyre passwd`
//	    salt       = "<base64>"
//	    iterations = 4096
//	    stored_key = "<base64>"
//	    server_key = "<base64>"
//	  }
//	  groups   = ["admins"]
//	  client_ids = ["alice-*"]       # optional: client ids the user claims (ClientIDs)
//	}
//
// Files written before the scram_sha_256 block existed load unchanged: a user without one logs in with
// its password only, not with SCRAM-SHA-256.
type User struct {
	Name string
	// PasswordHash is a bcrypt hash ("$2a$", "$2b$" or "$2y$", 60 bytes).
	PasswordHash string
	// SCRAM holds the user's SCRAM-SHA-256 credentials; nil when the entry has none.
	SCRAM  *SCRAMCredentials
	Groups []string
	// ClientIDs are client id patterns (CheckClientIDPattern) the user claims: an access rule id using
	// "%c" matches only a client id its user claims, here, through a group or through the host. Default
	// none.
	ClientIDs []string
}

// Group is a `group "NAME" { client_ids = [...] }` block of a users file: what the members of a group
// (users listing it in groups) claim together. A group block also makes NAME a group for access rules
// even while no user lists it.
type Group struct {
	Name      string
	ClientIDs []string
}

// UsersFile is a whole users file: its users and its group blocks.
type UsersFile struct {
	Users  []User
	Groups []Group
}

// SCRAMCredentials are what a server keeps to check a SCRAM-SHA-256 login (RFC 5802 §3, RFC 7677):
// values derived from the password, from which the password cannot be recovered.
type SCRAMCredentials struct {
	Salt []byte // SCRAMMinSalt to SCRAMMaxSalt bytes
	// Iterations of PBKDF2 the client runs on the password; default SCRAMIterations.
	Iterations int
	StoredKey  []byte // H(ClientKey), SCRAMKeyLength bytes
	ServerKey  []byte // HMAC(SaltedPassword, "Server Key"), SCRAMKeyLength bytes
}

// Bounds of SCRAM-SHA-256 credentials. RFC 7677 asks for at least 4096 iterations; the upper bound stops a
// typo from costing every client minutes per login.
const (
	SCRAMIterations    = 4096
	SCRAMMaxIterations = 10_000_000
	SCRAMMinSalt       = 8
	SCRAMMaxSalt       = 64
	SCRAMKeyLength     = 32 // SHA-256
)

// MaxUserNameLength bounds user and group names; longer credentials are refused before any lookup.
const MaxUserNameLength = 256

// LoadUsers reads a users file. Problems are returned as Errors naming path:line:col.
func LoadUsers(path string) ([]User, error) {
	f, err := LoadUsersFile(path)
	if err != nil {
		return nil, err
	}
	return f.Users, nil
}

// LoadUsersFile reads a users file, group blocks included. Problems are returned as Errors naming
// path:line:col.
func LoadUsersFile(path string) (*UsersFile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	return ParseUsersFile(src, path)
}

// ParseUsers decodes a users file's users; filename is used in error positions only (see
// ParseUsersFile).
func ParseUsers(src []byte, filename string) ([]User, error) {
	f, err := ParseUsersFile(src, filename)
	if err != nil {
		return nil, err
	}
	return f.Users, nil
}

// ParseUsersFile decodes a users file; filename is used in error positions only. User and group names
// must be unique and neither empty nor one of the access rule wildcards "+" and "*", and a user may not
// have the name of a group (listed in some user's groups, or a group block) unless it is in that group:
// access rules name both alike, and must never take one for the other.
func ParseUsersFile(src []byte, filename string) (*UsersFile, error) {
	f, errs := parseUsers(src, filename)
	if err := errs.errors(); err != nil {
		return nil, err
	}
	return f, nil
}

func parseUsers(src []byte, filename string) (*UsersFile, problems) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagErrors(diags, filename)
	}
	body := f.Body.(*hclsyntax.Body)
	d := &decoder{file: filename, pos: map[string]hcl.Range{}}
	d.attrs(body, "", nil)
	out := &UsersFile{}
	seen := map[string]string{}
	for _, b := range body.Blocks {
		switch b.Type {
		case "user":
			d.user(b, out, seen)
		case "group":
			d.group(b, out)
		default:
			d.unknownBlock(b, "user", "group")
		}
	}
	d.usersApartFromGroups(out)
	return out, d.errs
}

// user decodes a users file's user block into f; seen maps the names decoded so far to their position.
func (d *decoder) user(b *hclsyntax.Block, f *UsersFile, seen map[string]string) {
	if !d.labels(b, 1) {
		return
	}
	key := "u" + strconv.Itoa(len(f.Users))
	u := User{Name: b.Labels[0]}
	d.pos[key+".name"] = b.LabelRanges[0]
	d.attrs(b.Body, key, map[string]attrFunc{
		"password":   str(&u.PasswordHash),
		"groups":     strList(&u.Groups),
		"client_ids": strList(&u.ClientIDs),
	})
	var first *hclsyntax.Block
	for _, sb := range b.Body.Blocks {
		switch {
		case sb.Type != "scram_sha_256":
			d.unknownBlock(sb, "scram_sha_256")
		case first != nil:
			d.errAt(sb.TypeRange, "duplicate scram_sha_256 block (first at %s)", posOf(first.TypeRange))
		case d.labels(sb, 0):
			first = sb
			u.SCRAM = d.scram(sb, key+".scram", u.Name)
		}
	}
	if msg := checkPrincipalName(u.Name); msg != "" {
		d.errAt(b.LabelRanges[0], "user name %q %s", u.Name, msg)
	} else if first, dup := seen[u.Name]; dup {
		d.errAt(b.LabelRanges[0], "duplicate user %q (first defined at %s)", u.Name, first)
	} else {
		seen[u.Name] = posOf(b.LabelRanges[0])
	}
	if r, ok := d.pos[key+".password"]; !ok {
		d.errAt(b.TypeRange, "user %q needs a password = \"<bcrypt hash>\" (see lyre passwd)", u.Name)
	} else if !isBcryptHash(u.PasswordHash) {
		d.errAt(r, "password of user %q is not a bcrypt hash (see lyre passwd)", u.Name)
	}
	for j, g := range u.Groups {
		if msg := checkPrincipalName(g); msg != "" {
			r := d.pos[key+".groups"]
			if er, ok := d.pos[key+".groups."+strconv.Itoa(j)]; ok {
				r = er
			}
			d.errAt(r, "group name %q %s", g, msg)
		}
	}
	d.clientIDs(key, u.ClientIDs)
	f.Users = append(f.Users, u)
}

// group decodes a users file's group block into f.
func (d *decoder) group(b *hclsyntax.Block, f *UsersFile) {
	if !d.labels(b, 1) {
		return
	}
	key := "g" + strconv.Itoa(len(f.Groups))
	g := Group{Name: b.Labels[0]}
	d.pos[key] = b.LabelRanges[0]
	d.attrs(b.Body, key, map[string]attrFunc{"client_ids": strList(&g.ClientIDs)})
	d.noBlocks(b.Body)
	if msg := checkPrincipalName(g.Name); msg != "" {
		d.errAt(b.LabelRanges[0], "group name %q %s", g.Name, msg)
	}
	for i, o := range f.Groups {
		if o.Name == g.Name {
			d.errAt(b.LabelRanges[0], "duplicate group %q (first defined at %s)", g.Name, posOf(d.pos["g"+strconv.Itoa(i)]))
		}
	}
	d.clientIDs(key, g.ClientIDs)
	f.Groups = append(f.Groups, g)
}

// clientIDs checks the client_ids patterns decoded under key.
func (d *decoder) clientIDs(key string, ids []string) {
	for j, p := range ids {
		if err := CheckClientIDPattern(p); err != nil {
			r := d.pos[key+".client_ids"]
			if er, ok := d.pos[key+".client_ids."+strconv.Itoa(j)]; ok {
				r = er
			}
			d.errAt(r, "client_ids entry %q: %v", p, err)
		}
	}
}

// usersApartFromGroups reports every user named like a group it is not a member of: a rule naming that
// name would otherwise stand for two different sets of principals. A user in a group of its own name
// (user "admin" { groups = ["admin"] }) is fine: the group holds the user, so the name means the group.
func (d *decoder) usersApartFromGroups(f *UsersFile) {
	groups := map[string]bool{}
	for _, g := range f.Groups {
		groups[g.Name] = true
	}
	for _, u := range f.Users {
		for _, g := range u.Groups {
			groups[g] = true
		}
	}
	for i, u := range f.Users {
		if groups[u.Name] && !slices.Contains(u.Groups, u.Name) {
			d.errAt(d.pos["u"+strconv.Itoa(i)+".name"], "user %q is also the name of a group it is not in; access rules name users and groups alike, so the name would stand for both", u.Name)
		}
	}
}

// MaxClientIDPattern bounds a client_ids pattern.
const MaxClientIDPattern = 256

// CheckClientIDPattern reports why p cannot be a client_ids pattern. A pattern matches a client id
// whole: "*" stands for any run of characters (none included), "%u" for the user's own name, and every
// other character for itself; "%" may only start "%u".
func CheckClientIDPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty pattern")
	case len(p) > MaxClientIDPattern:
		return fmt.Errorf("longer than %d bytes", MaxClientIDPattern)
	case strings.ContainsAny(p, "\x00\r\n"):
		return fmt.Errorf("NUL or a line break")
	case strings.Contains(strings.ReplaceAll(p, "%u", ""), "%"):
		return fmt.Errorf(`"%%" may only start "%%u" (the user name)`)
	}
	return nil
}

// scram decodes a user's scram_sha_256 block; problems are reported and leave the result incomplete.
func (d *decoder) scram(b *hclsyntax.Block, key, user string) *SCRAMCredentials {
	s := &SCRAMCredentials{Iterations: SCRAMIterations}
	var salt, stored, server string
	d.attrs(b.Body, key, map[string]attrFunc{
		"salt":       str(&salt),
		"iterations": integer(&s.Iterations),
		"stored_key": str(&stored),
		"server_key": str(&server),
	})
	d.noBlocks(b.Body)
	s.Salt = d.base64(b, key, "salt", salt, user, SCRAMMinSalt, SCRAMMaxSalt)
	s.StoredKey = d.base64(b, key, "stored_key", stored, user, SCRAMKeyLength, SCRAMKeyLength)
	s.ServerKey = d.base64(b, key, "server_key", server, user, SCRAMKeyLength, SCRAMKeyLength)
	if r, ok := d.pos[key+".iterations"]; ok && (s.Iterations < SCRAMIterations || s.Iterations > SCRAMMaxIterations) {
		d.errAt(r, "iterations of user %q must be from %d to %d", user, SCRAMIterations, SCRAMMaxIterations)
	}
	return s
}

// base64 decodes the block's attribute name (value v, already decoded as a string) and checks its length.
func (d *decoder) base64(b *hclsyntax.Block, key, name, v, user string, minLen, maxLen int) []byte {
	r, ok := d.pos[key+"."+name]
	if !ok {
		d.errAt(b.TypeRange, "scram_sha_256 block of user %q needs %s = \"<base64>\" (see lyre passwd)", user, name)
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(v)
	switch {
	case err != nil:
		d.errAt(r, "%s of user %q is not base64 (see lyre passwd)", name, user)
	case minLen == maxLen && len(raw) != minLen:
		d.errAt(r, "%s of user %q must be %d bytes, not %d", name, user, minLen, len(raw))
	case len(raw) < minLen || len(raw) > maxLen:
		d.errAt(r, "%s of user %q must be %d to %d bytes, not %d", name, user, minLen, maxLen, len(raw))
	default:
		return raw
	}
	return nil
}

// Attributes renders what goes inside u's block in a users file, unindented: the password line and the
// scram_sha_256 block, as `lyre passwd` prints them. Name and groups are left out.
func (u User) Attributes() string {
	var b strings.Builder
	fmt.Fprintf(&b, "password = %s\n", quote(u.PasswordHash))
	if s := u.SCRAM; s != nil {
		enc := base64.StdEncoding.EncodeToString
		fmt.Fprintf(&b, "scram_sha_256 {\n  salt       = %q\n  iterations = %d\n  stored_key = %q\n  server_key = %q\n}\n",
			enc(s.Salt), s.Iterations, enc(s.StoredKey), enc(s.ServerKey))
	}
	return b.String()
}

// Format renders u as a whole block of a users file, which ParseUsers reads back.
func (u User) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "user %s {\n", quote(u.Name))
	for _, l := range strings.SplitAfter(u.Attributes(), "\n") {
		if l != "" {
			b.WriteString("  " + l)
		}
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"groups", u.Groups}, {"client_ids", u.ClientIDs}} {
		if l.list == nil {
			continue
		}
		qs := make([]string, len(l.list))
		for i, g := range l.list {
			qs[i] = quote(g)
		}
		fmt.Fprintf(&b, "  %s = [%s]\n", l.name, strings.Join(qs, ", "))
	}
	b.WriteString("}\n")
	return b.String()
}

// quote renders s as an HCL string literal. Go's %q would not do: HCL has no \x escapes, and "${" and
// "%{" start templates unless doubled.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// checkPrincipalName explains why a user or group name cannot be used, or returns "".
func checkPrincipalName(n string) string {
	switch {
	case n == "":
		return "must not be empty"
	case n == "+" || n == "*":
		return "is reserved for access rules (\"+\" any authenticated user, \"*\" anyone)"
	case len(n) > MaxUserNameLength:
		return fmt.Sprintf("is longer than %d bytes", MaxUserNameLength)
	case strings.ContainsAny(n, "\x00\r\n"):
		return "must not contain NUL or line breaks"
	}
	return ""
}

// isBcryptHash checks the shape of a bcrypt hash: $2a$, $2b$ or $2y$, a two-digit cost, 53 more bytes.
func isBcryptHash(h string) bool {
	if len(h) != 60 || h[0] != '$' || h[1] != '2' || h[3] != '$' || h[6] != '$' {
		return false
	}
	if v := h[2]; v != 'a' && v != 'b' && v != 'y' {
		return false
	}
	cost, err := strconv.Atoi(h[4:6])
	return err == nil && cost >= 4 && cost <= 31
}
