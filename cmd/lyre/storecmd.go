package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
)

const storeUsage = `usage:
  lyre store export (--dir DIR | [--config FILE] --vhost NAME) [--out FILE]
  lyre store import (--dir DIR | [--config FILE] --vhost NAME) [--in FILE] [--force]
  lyre store check  (--dir DIR | [--config FILE] --vhost NAME)

export writes a virtual host's store (queues, durable subscriptions, MQTT sessions, retained messages)
as line-delimited JSON, to standard output by default; import reads such a file (--in, "-" for standard
input) into a store, refusing one that already holds data unless --force merges into it; check verifies a
store's internal consistency (reference counts, expiry index). The broker must not be running on the
directory: its lock makes these commands fail. import also reads the export of a format-1 store (Lyre
until December 2026), converting it: that is how a format-1 directory is upgraded.`

// storeCommand runs `lyre store export|import` and returns the exit code.
func storeCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "export" && args[0] != "import" && args[0] != "check") {
		fmt.Fprintln(stderr, storeUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("lyre store "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, storeUsage) }
	dir := fs.String("dir", "", "store `directory`")
	configPath := fs.String("config", "", "configuration `file` naming the host's store directory")
	vhost := fs.String("vhost", "", "virtual host `name` whose store to use (with --config)")
	out := fs.String("out", "-", "export to `file` (- = standard output)")
	in := fs.String("in", "-", "import from `file` (- = standard input)")
	force := fs.Bool("force", false, "import into a store that already holds data")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lyre store: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	d, err := storeDir(*dir, *configPath, *vhost)
	if err != nil {
		fmt.Fprintf(stderr, "lyre store: %v\n", err)
		return 2
	}
	switch verb {
	case "export":
		err = storeExport(d, *out, stdout, stderr)
	case "import":
		err = storeImport(d, *in, *force, stderr)
	default:
		err = storeCheck(d, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "lyre store %s: %v\n", verb, err)
		return 1
	}
	return 0
}

// storeDir picks the directory from --dir, or from the named host's store block in the configuration.
func storeDir(dir, configPath, vhost string) (string, error) {
	if dir != "" {
		if vhost != "" || configPath != "" {
			return "", errors.New("give --dir or --config/--vhost, not both")
		}
		return dir, nil
	}
	if vhost == "" {
		return "", errors.New("--dir or --vhost is required")
	}
	cfg, err := loadConfig(configPath)
	if err != nil {
		return "", err
	}
	for _, h := range cfg.VirtualHosts {
		if h.Name != vhost {
			continue
		}
		if h.Store == nil || h.Store.Directory == "" {
			return "", fmt.Errorf("virtual host %q has no store directory (it keeps everything in memory)", vhost)
		}
		return h.Store.Directory, nil
	}
	return "", fmt.Errorf("no virtual host %q in %s", vhost, cfg.Source)
}

func openExisting(dir string) (*badgerstore.Store, error) {
	// Export of a directory that does not exist would silently create an empty store.
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		return nil, fmt.Errorf("%s: not a store directory: %w", dir, err)
	}
	return badgerstore.Open(dir, badgerstore.Options{GCInterval: -1})
}

func storeExport(dir, out string, stdout, stderr io.Writer) (err error) {
	s, err := openExisting(dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	w := stdout
	if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		w = f
	}
	c, err := store.Export(s, w)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %s: %s\n", dir, describeCounts(c))
	return nil
}

// importStream imports an export stream into s: this format's through store.Import, format 1's through
// its conversion (upgrade.go).
func importStream(r io.Reader, s store.Store, stderr io.Writer) error {
	br := bufio.NewReader(r)
	head, err := br.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	var h struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if json.Unmarshal(head, &h) == nil && h.Format == store.ExportFormat && h.Version == 1 {
		n, dropped, err := importV1(json.NewDecoder(br), s)
		if err != nil {
			return fmt.Errorf("format 1 stream: %w", err)
		}
		fmt.Fprintf(stderr, "converted %d records of format 1", n)
		if dropped > 0 {
			fmt.Fprintf(stderr, "; %d session messages matched none of their session's subscriptions and were dropped", dropped)
		}
		fmt.Fprintln(stderr)
		return nil
	}
	_, err = store.Import(io.MultiReader(bytes.NewReader(head), br), s)
	return err
}

func storeImport(dir, in string, force bool, stderr io.Writer) (err error) {
	r := io.Reader(os.Stdin)
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	s, err := badgerstore.Open(dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	before, err := s.Recover(store.Visitor{})
	if err != nil {
		return err
	}
	if before != (store.Counts{}) && !force {
		return fmt.Errorf("%s already holds data (%s); use --force to merge into it", dir, describeCounts(before))
	}
	if err := importStream(r, s, stderr); err != nil {
		return err
	}
	after, err := s.Recover(store.Visitor{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "imported into %s: %s\n", dir, describeCounts(after))
	return nil
}

func storeCheck(dir string, stdout io.Writer) (err error) {
	s, err := openExisting(dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	if err := s.Verify(); err != nil {
		return err
	}
	c, err := s.Recover(store.Visitor{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok: %s\n", dir, describeCounts(c))
	return nil
}

func describeCounts(c store.Counts) string {
	return fmt.Sprintf("%d queues (%d messages), %d durable subscriptions (%d messages), %d sessions "+
		"(%d in flight, %d awaiting PUBREL), %d retained, %d message bodies",
		c.Queues, c.QueueEntries, c.DurableSubs, c.DurableSubEntries, c.Sessions,
		c.Inflight, c.Inbound, c.Retained, c.Messages)
}
