package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/virtualhost"
)

// passwd implements `lyre passwd [--cost N] [--iterations N]`: it reads one password line from standard
// input and prints what a users file keeps for it, the lines that go inside a user block:
//
//	user "alice" {
//	  password = "<bcrypt hash>"
//	  scram_sha_256 {
//	    salt       = "<base64>"
//	    iterations = 4096
//	    stored_key = "<base64>"
//	    server_key = "<base64>"
//	  }
//	}
//
// The password itself is never printed, and nothing but those lines goes to stdout, so `lyre passwd <
// file` can be scripted. A password that SASLprep refuses cannot be used with SCRAM: then only the
// password line is printed, and a warning goes to stderr.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lyre passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt `cost` (%d to %d)", bcrypt.MinCost, bcrypt.MaxCost))
	iterations := fs.Int("iterations", conf.SCRAMIterations, fmt.Sprintf("SCRAM-SHA-256 PBKDF2 `rounds` (%d to %d)", conf.SCRAMIterations, conf.SCRAMMaxIterations))
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: lyre passwd [--cost N] [--iterations N] < password
Reads a password line on standard input and prints, for a user block of a users file, its bcrypt hash
(password = "...") and its SCRAM-SHA-256 credentials (a scram_sha_256 block: salt, iterations, stored
and server keys; the password cannot be recovered from them).
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lyre passwd: unexpected argument %q (the password is read from standard input)\n", fs.Arg(0))
		return 2
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		fmt.Fprintf(stderr, "lyre passwd: --cost must be from %d to %d\n", bcrypt.MinCost, bcrypt.MaxCost)
		return 2
	}
	if *iterations < conf.SCRAMIterations || *iterations > conf.SCRAMMaxIterations {
		fmt.Fprintf(stderr, "lyre passwd: --iterations must be from %d to %d\n", conf.SCRAMIterations, conf.SCRAMMaxIterations)
		return 2
	}
	// One line, at most a little more than bcrypt can use, so a runaway input is not read whole.
	line, err := bufio.NewReaderSize(io.LimitReader(stdin, virtualhost.MaxPasswordLength+3), 128).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "lyre passwd: reading the password: %v\n", err)
		return 1
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case pw == "":
		fmt.Fprintln(stderr, "lyre passwd: empty password (write it on standard input, e.g. lyre passwd <<< 'secret')")
		return 1
	case len(pw) > virtualhost.MaxPasswordLength:
		fmt.Fprintf(stderr, "lyre passwd: password longer than %d bytes (bcrypt would ignore the rest)\n", virtualhost.MaxPasswordLength)
		return 1
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), *cost)
	if err != nil {
		fmt.Fprintf(stderr, "lyre passwd: %v\n", err)
		return 1
	}
	u := conf.User{PasswordHash: string(hash)}
	if u.SCRAM, err = virtualhost.NewSCRAMCredentials(pw, *iterations); err != nil {
		fmt.Fprintf(stderr, "lyre passwd: no SCRAM-SHA-256 credentials, only the password hash: %v\n", err)
	}
	fmt.Fprint(stdout, u.Attributes())
	return 0
}
