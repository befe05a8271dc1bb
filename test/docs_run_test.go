package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// docBlockTimeout bounds one block; the slowest (README's tour, a recipe)
// take seconds.
const docBlockTimeout = 3 * time.Minute

// docAgain names, for a doc, the section whose blocks (with those before
// the first section) run a second time after the doc, on the same files:
// the README's tour must give the same output when a user runs it again
// from its first command.
var docAgain = map[string]string{"README.md": "A five-minute tour"}

// docEnv is where one doc's blocks run (see TestDocs).
type docEnv struct {
	t     *testing.T
	repo  string // the repository's root: the blocks' working directory
	r     string // R: every rewritten path is below it
	env   []string
	redis string // HOST:PORT that 10.0.0.5:6379 becomes; "" if unused
	procs []*docProc
	sd    *systemd
	// sockDir holds the units' NOTIFY_SOCKETs (a short path: R may be too
	// long for a socket's name).
	sockDir string
}

// docProc is one bash running a block, in its own process group.
type docProc struct {
	block docBlock
	cmd   *exec.Cmd
	out   string // the file its stdout and stderr go to
	done  chan struct{}
	err   error
}

// docPathRE finds the absolute paths the docs use that runs must not share.
var docPathRE = regexp.MustCompile(`(^|[^A-Za-z0-9_.~/-])(/tmp/|/mnt/|/var/lib/|/etc/rlfs|/etc/redis|/etc/systemd/|/usr/local/bin/)`)

// docStubs stand for the user's own programs that the docs call.
var docStubs = map[string]string{
	"sendmail":  "cat >/dev/null\n",
	"curl":      `echo '{"ok":true}'` + "\n",
	"ask-llm":   "echo 412\n",
	"backup.sh": "",
	"systemctl": systemctlStub,
}

// runDoc runs the blocks of one doc, in order, and those docAgain names
// once more.
func runDoc(t *testing.T, repo string, blocks []docBlock) {
	e := newDocEnv(t, repo, blocks)
	rounds := [][]docBlock{blocks}
	if sec, ok := docAgain[blocks[0].file]; ok {
		again := slices.DeleteFunc(slices.Clone(blocks), func(b docBlock) bool { return b.section != "" && b.section != sec })
		require.NotEmpty(t, again, "%s has no blocks in section %q to run again", blocks[0].file, sec)
		rounds = append(rounds, again)
	}
	for i, round := range rounds {
		for _, b := range round {
			if t.Failed() {
				return
			}
			e.runBlock(b, i+1)
		}
		e.stopAll()
	}
}

// docTools are programs docs call that not every machine has: a doc that
// calls one is skipped without it, or fails under CI (requireTools).
var docTools = []string{"redis-server", "redis-cli", "setpriv", "findmnt", "unshare", "groupadd", "flock", "timeout"}

func newDocEnv(t *testing.T, repo string, blocks []docBlock) *docEnv {
	t.Helper()
	for _, tool := range docTools {
		if slices.ContainsFunc(blocks, func(b docBlock) bool { return strings.Contains(b.body, tool+" ") }) {
			requireTools(t, tool)
		}
	}
	e := &docEnv{t: t, repo: repo, r: t.TempDir()}
	t.Cleanup(e.cleanup)
	// Other users (setpriv in a doc) must reach R's mounts, as they reach
	// /mnt/rl: t.TempDir() and its parent are 0700.
	for _, d := range []string{filepath.Dir(e.r), e.r} {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	for _, d := range []string{"tmp", "mnt", "var/lib", "etc/systemd/system", "usr/local/bin", "bin"} {
		require.NoError(t, os.MkdirAll(filepath.Join(e.r, d), 0o755))
	}
	require.NoError(t, os.Symlink(rlfsBin, filepath.Join(e.r, "bin", "rlfs")))
	for name, body := range docStubs {
		script := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>\"$DOCTEST_R/stubs.log\"\n" + body
		require.NoError(t, os.WriteFile(filepath.Join(e.r, "bin", name), []byte(script), 0o755))
	}
	path := strings.Join([]string{filepath.Join(e.r, "usr/local/bin"), filepath.Join(e.r, "bin"), filepath.Dir(goTool()), interpreterPATH()}, ":")
	e.env = append(os.Environ(), "PATH="+path, "DOCTEST_R="+e.r, "RLFS_DB="+filepath.Join(e.r, "var/lib/rlfs/meters.db"),
		"TMPDIR="+filepath.Join(e.r, "tmp"), "LC_ALL=C", "LANG=C")
	var err error
	e.sockDir, err = os.MkdirTemp("", "rlfs-doc-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(e.sockDir) })
	e.serveSystemctl()
	if slices.ContainsFunc(blocks, func(b docBlock) bool { return strings.Contains(b.body, "10.0.0.5") }) {
		link := newNetLink(t)
		e.redis = net.JoinHostPort(link.rootAddr, strconv.Itoa(redistest.FreePort(t)))
	}
	return e
}

var docPortRE = regexp.MustCompile(`(^|[^0-9])6379($|[^0-9])`)

// rewrite moves a doc's paths under R and its Redis address to the test's.
func (e *docEnv) rewrite(s string) string {
	s = docPathRE.ReplaceAllString(s, "${1}"+e.r+"${2}")
	if e.redis != "" {
		host, port, _ := net.SplitHostPort(e.redis)
		s = strings.ReplaceAll(s, "10.0.0.5", host)
		s = docPortRE.ReplaceAllString(s, "${1}"+port+"${2}")
	}
	return s
}

// unrewrite turns output back into the doc's paths and address.
func (e *docEnv) unrewrite(s string) string {
	if e.redis != "" {
		s = strings.ReplaceAll(s, e.redis, "10.0.0.5:6379")
	}
	return strings.ReplaceAll(s, e.r, "")
}

// runBlock runs one block as its marker says.
func (e *docEnv) runBlock(b docBlock, round int) {
	t := e.t
	m := b.marker
	t.Logf("round %d: %s", round, b)
	start := time.Now()
	defer func() { t.Logf("%s took %v", b, time.Since(start).Round(time.Millisecond)) }()
	d := e.meters(m)
	script, want := e.script(b)
	p := e.start(b, script)
	if m.background {
		e.waitReady(p)
		return
	}
	select {
	case <-p.done:
	case <-time.After(docBlockTimeout):
		t.Fatalf("%s did not finish within %v; its output:\n%s", b, docBlockTimeout, e.unrewrite(p.output()))
	}
	out := e.unrewrite(p.output())
	t.Logf("%s printed:\n%s", b, out)
	if m.expect {
		checkDocOutput(t, b, want, out)
	} else {
		require.NoError(t, p.err, "%s failed; its output:\n%s", b, out)
	}
	if d != nil {
		d.stop(t)
	}
}

// meters makes the meters a block needs exist at its mount: on the
// daemon serving it (a background block's), or on a daemon started now,
// which the caller stops after the block.
func (e *docEnv) meters(m *docMarker) *daemon {
	t := e.t
	if len(m.meters) == 0 {
		return nil
	}
	mnt := e.rewrite(m.mount)
	if _, ok := mountDev(mnt); ok {
		for _, nm := range m.meters {
			name, spec, _ := strings.Cut(nm, "=")
			if err := os.Mkdir(filepath.Join(mnt, name), 0o755); err != nil && !os.IsExist(err) {
				require.NoError(t, err, "mkdir of meter %s on the mount a background block serves", name)
			}
			require.NoError(t, os.WriteFile(filepath.Join(mnt, name, "limits"), []byte(spec+"\n"), 0o644), "limits of meter %s", name)
		}
		return nil
	}
	d := &daemon{db: filepath.Join(e.r, "var/lib/rlfs/meters.db"), mnt: mnt, meters: m.meters}
	require.NoError(t, os.MkdirAll(filepath.Dir(d.db), 0o755))
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t)
	return d
}

// script is what bash runs for b, and for a console block the output it
// shows (one line each).
func (e *docEnv) script(b docBlock) (script string, want []string) {
	body := b.body
	if b.lang == "console" {
		var cmds []string
		for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
			if c, ok := strings.CutPrefix(l, "# "); ok {
				cmds = append(cmds, c)
			} else if c, ok := strings.CutPrefix(l, "$ "); ok {
				cmds = append(cmds, c)
			} else {
				want = append(want, l)
			}
		}
		// As in a terminal, ls lists names in columns.
		body = "ls() { COLUMNS=80 command ls -C -T 0 \"$@\"; }\n" + strings.Join(cmds, "\n") + "\n"
	}
	if !b.marker.expect {
		body = "set -e\n" + body
	}
	return e.rewrite(body), want
}

// output is what the block printed so far.
func (p *docProc) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// start runs script with bash in its own process group, its output to a
// file: not a pipe, which a daemon the block left running would hold open.
func (e *docEnv) start(b docBlock, script string) *docProc {
	t := e.t
	f := filepath.Join(e.r, fmt.Sprintf("block-%d.sh", b.line))
	require.NoError(t, os.WriteFile(f, []byte(script), 0o644))
	in, err := os.Open(f)
	require.NoError(t, err)
	defer in.Close()
	sh := bash.need(t)
	args := []string{sh} // the script comes on stdin: the command line is "bash", as in a terminal
	if b.marker.privateEtc {
		requireTools(t, "unshare")
		etc := filepath.Join(e.r, "etc-copy")
		args = []string{"unshare", "--mount", "--propagation", "private", "--", sh, "-c",
			fmt.Sprintf("cp -a /etc %s && mount --bind %s /etc && exec %s", etc, etc, sh)}
	}
	p := &docProc{block: b, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	if len(args) == 1 {
		p.cmd.Args[0] = "bash"
	}
	p.cmd.Dir, p.cmd.Env, p.cmd.Stdin = e.repo, e.env, in
	p.out = filepath.Join(e.r, fmt.Sprintf("block-%d.out", b.line))
	out, err := os.OpenFile(p.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer out.Close()
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, p.cmd.Start(), "start %s", b)
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	e.procs = append(e.procs, p)
	return p
}

// waitReady runs the ready command of a background block until it
// succeeds; the block must not exit meanwhile.
func (e *docEnv) waitReady(p *docProc) {
	t := e.t
	ready := e.rewrite(p.block.marker.ready)
	deadline := time.Now().Add(mountTimeout)
	for {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before %q succeeded; its output:\n%s", p.block, p.err, p.block.marker.ready, e.unrewrite(p.output()))
		default:
		}
		cmd := exec.Command(bash.need(t), "-c", ready)
		cmd.Dir, cmd.Env = e.repo, e.env
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q did not succeed within %v: %v: %s\nthe block's output:\n%s", p.block, p.block.marker.ready, mountTimeout, err, e.unrewrite(string(out)), e.unrewrite(p.output()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAll ends a round: each background block gets SIGINT, as Ctrl-C
// sends it, and must exit 0; then whatever else the blocks started gets
// SIGTERM (SIGKILL if it stays), and every mount under R is removed.
func (e *docEnv) stopAll() {
	t := e.t
	e.sd.stopAll(t)
	for _, p := range e.procs {
		if !p.block.marker.background {
			continue
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-p.done:
			require.NoError(t, p.err, "%s after Ctrl-C (SIGINT); its output:\n%s", p.block, e.unrewrite(p.output()))
		case <-time.After(stopTimeout):
			t.Errorf("%s did not exit within %v of SIGINT; its output:\n%s", p.block, stopTimeout, e.unrewrite(p.output()))
		}
	}
	e.stopGroups()
	e.procs = nil
}

// stopGroups stops every process of the blocks' process groups and
// removes the mounts under R.
func (e *docEnv) stopGroups() {
	t := e.t
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		var left []int
		for _, p := range e.procs {
			if groupAlive(p.cmd.Process.Pid) {
				_ = syscall.Kill(-p.cmd.Process.Pid, sig)
				left = append(left, p.cmd.Process.Pid)
			}
		}
		deadline := time.Now().Add(stopTimeout)
		for len(left) > 0 && time.Now().Before(deadline) {
			left = slices.DeleteFunc(left, func(g int) bool { return !groupAlive(g) })
			time.Sleep(pollEvery)
		}
		if len(left) == 0 {
			break
		}
		t.Logf("process groups %v still run %v after %v; next signal", left, stopTimeout, sig)
	}
	for _, p := range e.procs {
		<-p.done
	}
	for _, mnt := range mountsUnder(e.r) {
		dev, _ := mountDev(mnt)
		detach(t, mnt, dev)
	}
}

func (e *docEnv) cleanup() {
	e.sd.stopAll(e.t)
	e.stopGroups()
	if e.t.Failed() {
		if b, err := os.ReadFile(filepath.Join(e.r, "stubs.log")); err == nil {
			e.t.Logf("the stand-ins were called:\n%s", b)
		}
	}
}

// groupAlive reports whether a process of process group pgid runs.
func groupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …: comm may hold spaces and parens.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return true
		}
	}
	return false
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 {
			if p := unescapeMount(f[4]); p == dir || strings.HasPrefix(p, dir+"/") {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(out)
}
