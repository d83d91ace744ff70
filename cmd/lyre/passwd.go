package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/virtualhost"
)

// passwd implements `lyre passwd [--cost N]`: it reads one password line from standard input and prints
// its bcrypt hash as the last line of output, ready for a users file:
//
//	user "alice" {
//	  password = "<the hash>"
//	}
//
// The password is not echoed; nothing but the hash goes to stdout, so `lyre passwd < file` can be
// scripted.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lyre passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt `cost` (%d to %d)", bcrypt.MinCost, bcrypt.MaxCost))
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lyre passwd [--cost N] < password\nReads a password line on standard input and prints its bcrypt hash for a users file.")
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
	fmt.Fprintf(stdout, "%s\n", hash)
	return 0
}
