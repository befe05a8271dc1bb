package test

// TestDocs runs the command blocks of the user's documentation, so that a
// doc that drifts from the code fails CI: README.md, docs/*.md and every
// *.md under examples/.
//
// # Blocks
//
// Every code block is fenced (```LANG … ```) and names its language; an
// indented code block, or a fence without a language, fails the test (it
// could hide a command). Blocks in a shell language (sh, bash, shell,
// console) must carry a marker: an HTML comment on the line right before
// the fence (blank lines may sit between). Other languages (text, toml,
// ini, json, python, go) are not run.
//
//	<!-- doc-test: skip reason="needs a second machine" -->
//	    not run; the reason says why it cannot run here (the exception)
//	<!-- doc-test: run -->
//	    run with bash; every command must succeed (set -e)
//	<!-- doc-test: run expect-output -->
//	    a console block: the lines after each "# " command are the
//	    output it must print (stdout and stderr); see below
//	<!-- doc-test: run meters="email=1/s,75/h api=10/s" mount="/mnt/rl" -->
//	    with a daemon the test starts first, serving these meters (NAME=SPEC,
//	    separated by spaces) at mount (default /mnt/rl) on the database
//	    /var/lib/rlfs/meters.db; stopped after the block
//	<!-- doc-test: run background ready="rlfs wait /tmp/rl" -->
//	    a server the doc runs in the foreground (rlfs mount, redis-server):
//	    run in the background until the doc's last block has run, then it
//	    gets SIGINT (Ctrl-C) and must exit 0; the next block runs once the
//	    ready command succeeds
//	<!-- doc-test: run private-etc -->
//	    in a mount namespace of its own with a copy of /etc, for a block
//	    that adds users or groups (groupadd)
//
// # Where blocks run
//
// Each doc runs in a directory R of its own (t.TempDir), its blocks in
// order, each by a new bash whose working directory is the repository's
// root (the docs say "in a clone"). Paths under /tmp/, /mnt/, /var/lib/,
// /etc/rlfs, /etc/redis, /etc/systemd/ and /usr/local/bin/ are rewritten
// to R/… (in the blocks, in what systemd units name, and back in the
// output compared), so that runs never collide and nothing outside R is
// touched; $RLFS_DB is R/var/lib/rlfs/meters.db. A Redis address
// 10.0.0.5:6379 becomes a free port on a link-local address of a veth link
// the test makes: not loopback, as another host's address would not be.
// PATH starts with R/usr/local/bin, then the test's rlfs and stand-ins for
// the programs docs call to stand for the user's own (sendmail, curl,
// ask-llm, backup.sh: they never reach a network), and for systemctl: the
// machine has no systemd as PID 1, so the test runs the units as systemd
// would (docs_systemd_test.go). Every process a block started is stopped
// and every mount under R removed in Cleanup.
//
// # Expected output
//
// A console block with expect-output compares the whole output of its
// commands with the lines shown, after both are normalized: times
// (2026-11-27T04:19:29.031Z), durations after "waited", "held:", "in",
// pids, call numbers in grant lines (concurrent calls print in either
// order), dates in ls -l, and bash's "line N:" in error messages. A line
// "..." stands for any number of lines. As in a terminal, ls lists names
// in columns (80 wide).

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docBlock is one fenced code block of a doc.
type docBlock struct {
	file    string // relative to the repository root
	line    int    // of the opening fence, from 1
	lang    string
	body    string
	marker  *docMarker // nil: none
	section string     // the last "## " heading above it; "" before any
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d (```%s)", b.file, b.line, b.lang) }

// docMarker is what a <!-- doc-test: … --> comment asks for.
type docMarker struct {
	skip       string // the reason; "" unless skipped
	run        bool
	expect     bool
	meters     []string
	mount      string
	background bool
	ready      string
	privateEtc bool
}

var shellLangs = []string{"sh", "bash", "shell", "console"}

var (
	markerRE    = regexp.MustCompile(`^<!-- doc-test: (.*) -->$`)
	markerKVRE  = regexp.MustCompile(`([a-z-]+)(?:="([^"]*)")?`)
	fenceOpenRE = regexp.MustCompile("^ {0,3}(```+|~~~+)\\s*([^`\\s]*)")
	listItemRE  = regexp.MustCompile(`^\s*([-*+]|\d+[.)])\s`)
)

// parseMarker reads the words of a doc-test comment.
func parseMarker(text string) (*docMarker, error) {
	m := &docMarker{mount: "/mnt/rl"}
	rest := markerKVRE.ReplaceAllStringFunc(text, func(kv string) string {
		sub := markerKVRE.FindStringSubmatch(kv)
		key, val := sub[1], sub[2]
		switch key {
		case "skip":
			m.skip = "?"
		case "reason":
			m.skip = val
		case "run":
			m.run = true
		case "expect-output":
			m.expect = true
		case "meters":
			m.meters = strings.Fields(val)
		case "mount":
			m.mount = val
		case "background":
			m.background = true
		case "ready":
			m.ready = val
		case "private-etc":
			m.privateEtc = true
		default:
			return kv // unknown: left in rest
		}
		return ""
	})
	switch {
	case strings.TrimSpace(rest) != "":
		return nil, fmt.Errorf("unknown words %q (known: skip reason=\"…\", run, expect-output, meters=\"…\", mount=\"…\", background, ready=\"…\", private-etc)", strings.TrimSpace(rest))
	case m.skip == "?" || (m.skip != "" && strings.TrimSpace(m.skip) == ""):
		return nil, fmt.Errorf("skip needs reason=\"why it cannot run here\"")
	case m.skip != "" && m.run:
		return nil, fmt.Errorf("skip and run exclude each other")
	case m.skip == "" && !m.run:
		return nil, fmt.Errorf("say run or skip reason=\"…\"")
	case m.background && m.ready == "":
		return nil, fmt.Errorf("background needs ready=\"a command that succeeds once it serves\"")
	}
	return m, nil
}

// parseDoc finds the fenced blocks of a markdown file and their markers.
// It reports an indented code block, a fence without a language, a bad
// marker or an unclosed fence as an error.
func parseDoc(path, name string) ([]docBlock, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	var blocks []docBlock
	var errs []string
	bad := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", name, i+1, fmt.Sprintf(format, args...)))
	}
	lastText, inList := "", false // the last non-blank line outside blocks; whether it is in a list
	section := ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if m := fenceOpenRE.FindStringSubmatch(line); m != nil && !(m[1][0] == '`' && strings.Contains(strings.TrimLeft(line, " `"), "`")) {
			b := docBlock{file: name, line: i + 1, lang: m[2], section: section}
			end := closeFence(lines, i, m[1])
			if end < 0 {
				bad(i, "fence %s is never closed", m[1])
				break
			}
			b.body = strings.Join(lines[i+1:end], "\n") + "\n"
			if mm := markerRE.FindStringSubmatch(strings.TrimSpace(lastText)); mm != nil {
				if b.marker, err = parseMarker(mm[1]); err != nil {
					bad(i, "doc-test marker: %v", err)
				}
			}
			if b.lang == "" {
				bad(i, "a fence without a language: name it (```sh, ```console, or ```text for output)")
			}
			blocks = append(blocks, b)
			i, lastText = end, line
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = h
		}
		indent := len(line) - len(strings.TrimLeft(line, " \t"))
		prevBlank := i > 0 && strings.TrimSpace(lines[i-1]) == ""
		switch {
		case listItemRE.MatchString(line):
			inList = true
		case indent == 0:
			inList = false
		case indent >= 4 && prevBlank && !inList && !strings.HasPrefix(trimmed, "<!--"):
			bad(i, "an indented code block: make it a fenced block with a language (```sh, ```text …), so that TestDocs knows whether to run it")
		}
		lastText = line
	}
	if len(errs) > 0 {
		return blocks, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return blocks, nil
}

// (A backtick fence's info string holds no backtick: "```` ```sh ````"
// at the start of a line is inline code, not a fence.)

// readLines reads a text file's lines.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

// closeFence is the index of the line closing the fence opened at lines[i].
func closeFence(lines []string, i int, fence string) int {
	for j := i + 1; j < len(lines); j++ {
		t := strings.TrimSpace(lines[j])
		if strings.HasPrefix(t, fence[:1]) && strings.Trim(t, fence[:1]) == "" && len(t) >= len(fence) {
			return j
		}
	}
	return -1
}

// docFiles are the user's documentation, relative to the repository root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "examples/*.md", "examples/*/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		require.NoError(t, err)
		for _, p := range m {
			rel, err := filepath.Rel(root, p)
			require.NoError(t, err)
			files = append(files, rel)
		}
	}
	slices.Sort(files)
	return files
}

// repoRoot is the repository's root: the parent of test/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	return root
}

// TestDocsBlocksAreMarked: every doc parses, and every shell block says
// whether it runs (and how) or why it cannot. It needs no FUSE: a new
// block without a marker fails here on any machine.
func TestDocsBlocksAreMarked(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	shell := 0
	var problems []string
	for _, name := range docFiles(t, root) {
		blocks, err := parseDoc(filepath.Join(root, name), name)
		if err != nil {
			problems = append(problems, err.Error())
		}
		for _, b := range blocks {
			if !slices.Contains(shellLangs, b.lang) {
				continue
			}
			shell++
			switch {
			case b.marker == nil:
				problems = append(problems, fmt.Sprintf("%s: a %s block without a doc-test marker: put <!-- doc-test: run --> (or skip reason=\"…\") on the line before it", b, b.lang))
			case b.marker.expect && b.lang != "console":
				problems = append(problems, fmt.Sprintf("%s: expect-output is for console blocks, whose # lines are commands", b))
			}
		}
	}
	if len(problems) > 0 {
		t.Fatalf("see test/docs_test.go for the markers:\n%s", strings.Join(problems, "\n"))
	}
	require.Greater(t, shell, 10, "the docs' shell blocks were not found")
}

// TestDocs runs every doc's runnable blocks, each doc in parallel.
func TestDocs(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	root := repoRoot(t)
	for _, name := range docFiles(t, root) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			blocks, err := parseDoc(filepath.Join(root, name), name)
			require.NoError(t, err)
			var run []docBlock
			for _, b := range blocks {
				if b.marker != nil && b.marker.run {
					run = append(run, b)
				}
			}
			if len(run) > 0 {
				runDoc(t, root, run)
			}
		})
	}
}
