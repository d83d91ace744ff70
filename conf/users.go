package conf

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// User is one entry of a virtual host's users file:
//
//	user "alice" {
//	  password = "$2a$10$..."   # bcrypt hash, as printed by `lyre passwd`
//	  groups   = ["admins"]
//	}
type User struct {
	Name string
	// PasswordHash is a bcrypt hash ("$2a$", "$2b$" or "$2y$", 60 bytes).
	PasswordHash string
	Groups       []string
}

// MaxUserNameLength bounds user and group names; longer credentials are refused before any lookup.
const MaxUserNameLength = 256

// LoadUsers reads a users file. Problems are returned as Errors naming path:line:col.
func LoadUsers(path string) ([]User, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	return ParseUsers(src, path)
}

// ParseUsers decodes a users file; filename is used in error positions only. Names must be unique and
// neither empty nor one of the access rule wildcards "+" and "*".
func ParseUsers(src []byte, filename string) ([]User, error) {
	users, errs := parseUsers(src, filename)
	if err := errs.errors(); err != nil {
		return nil, err
	}
	return users, nil
}

func parseUsers(src []byte, filename string) ([]User, problems) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagErrors(diags, filename)
	}
	body := f.Body.(*hclsyntax.Body)
	d := &decoder{file: filename, pos: map[string]hcl.Range{}}
	d.attrs(body, "", nil)
	var users []User
	seen := map[string]string{}
	for _, b := range body.Blocks {
		if b.Type != "user" {
			d.unknownBlock(b, "user")
			continue
		}
		if !d.labels(b, 1) {
			continue
		}
		key := "u" + strconv.Itoa(len(users))
		u := User{Name: b.Labels[0]}
		d.attrs(b.Body, key, map[string]attrFunc{
			"password": str(&u.PasswordHash),
			"groups":   strList(&u.Groups),
		})
		d.noBlocks(b.Body)
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
		users = append(users, u)
	}
	return users, d.errs
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
