package file_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

// sa returns one ServiceAccount document per name.
func sa(names ...string) string {
	docs := make([]string, len(names))
	for i, n := range names {
		docs[i] = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: " + n + "\n"
	}
	return strings.Join(docs, "---\n")
}

// badPolicy has an error on line 6 (spec.action).
const badPolicy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n  action: MAYBE\n"

const wait = 10 * time.Second

// clock is an injected Now that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// harness is a directory, a real Store and a Source over it.
type harness struct {
	t        *testing.T
	dir      string
	store    *policies.Store
	src      *file.Source
	reg      *prometheus.Registry
	clock    *clock
	snaps    <-chan *policies.Snapshot
	cancel   context.CancelFunc
	done     chan error
	barriers int
}

// newHarness writes files (path -> content) and creates the source.
func newHarness(t *testing.T, debounce time.Duration, files map[string]string) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		dir:   t.TempDir(),
		store: policies.NewStore(policies.StoreConfig{}),
		reg:   prometheus.NewRegistry(),
		clock: &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
	}
	for p, content := range files {
		h.write(p, content)
	}
	// Logs show with the failures they explain.
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := file.New(file.Config{Dir: h.dir, Store: h.store, Debounce: debounce, Metrics: h.reg, Now: h.clock.Now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	h.src = src
	return h
}

// run starts Run and waits for the initial snapshot.
func (h *harness) run() *policies.Snapshot {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.t.Context())
	h.cancel = cancel
	h.snaps = h.store.Subscribe(ctx)
	h.done = make(chan error, 1)
	go func() { h.done <- h.src.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			h.t.Error("Run did not return after cancel")
		}
	})
	return h.await(func(*policies.Snapshot) bool { return true })
}

func (h *harness) write(rel, content string) {
	h.t.Helper()
	p := filepath.Join(h.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) remove(rel string) {
	h.t.Helper()
	if err := os.RemoveAll(filepath.Join(h.dir, rel)); err != nil {
		h.t.Fatal(err)
	}
}

// await returns the first snapshot the store publishes that satisfies ok.
func (h *harness) await(ok func(*policies.Snapshot) bool) *policies.Snapshot {
	h.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case snap, open := <-h.snaps:
			if !open {
				h.t.Fatal("subscription closed")
			}
			if ok(snap) {
				return snap
			}
		case <-timeout:
			cur := h.store.Current()
			h.t.Fatalf("no matching snapshot within %s; current has %v (%s); status %+v", wait, accounts(cur), sources(cur), h.src.Status())
			return nil
		}
	}
}

// barrier writes a marker file and waits for the snapshot holding it. A
// rejected change publishes nothing, so this is how a test knows that the
// source has processed every change made before: the watcher delivers
// events in order, and the marker's rebuild comes after theirs.
func (h *harness) barrier() *policies.Snapshot {
	h.t.Helper()
	h.barriers++
	name := fmt.Sprintf("barrier-%d", h.barriers)
	h.write("zz-barrier.yaml", sa(name))
	return h.await(func(s *policies.Snapshot) bool { return slices.Contains(allAccounts(s), name) })
}

// scrape returns the registry in the text exposition format.
func (h *harness) scrape() string {
	// Status waits for the rebuild that published the last snapshot to
	// finish, metrics included.
	h.src.Status()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// metric scrapes the registry and returns one series' value.
func (h *harness) metric(series string) float64 {
	h.t.Helper()
	sc := bufio.NewScanner(strings.NewReader(h.scrape()))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatal(err)
			}
			return f
		}
	}
	h.t.Fatalf("series %s not exported", series)
	return 0
}

func allAccounts(s *policies.Snapshot) []string {
	var out []string
	if s == nil {
		return nil
	}
	for _, r := range s.Resources() {
		if r.Kind.Kind == "ServiceAccount" {
			out = append(out, r.Name)
		}
	}
	slices.Sort(out)
	return out
}

// accounts lists the ServiceAccounts of a snapshot, barriers left out.
func accounts(s *policies.Snapshot) []string {
	return slices.DeleteFunc(allAccounts(s), func(n string) bool { return strings.HasPrefix(n, "barrier-") })
}

func hasAccounts(want ...string) func(*policies.Snapshot) bool {
	slices.Sort(want)
	return func(s *policies.Snapshot) bool { return slices.Equal(accounts(s), want) }
}

func sourceOf(s *policies.Snapshot, name string) string {
	for _, r := range s.Resources() {
		if r.Kind.Kind == "ServiceAccount" && r.Name == name {
			return r.Source.String()
		}
	}
	return ""
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	store := policies.NewStore(policies.StoreConfig{})
	dir := t.TempDir()
	notDir := filepath.Join(dir, "f.yaml")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]file.Config{
		"no dir":        {Store: store},
		"no store":      {Dir: dir},
		"missing dir":   {Dir: filepath.Join(dir, "nope"), Store: store},
		"not a dir":     {Dir: notDir, Store: store},
		"negative wait": {Dir: dir, Store: store, Debounce: -time.Second},
	} {
		if _, err := file.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := file.New(file.Config{Dir: dir, Store: store, Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(file.Config{Dir: dir, Store: store, Metrics: reg}); err == nil {
		t.Error("a second source registered the same metrics")
	}
}

func TestLoadOnceReadsTreeAndSkipsIgnored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, map[string]string{
		"a.yaml":          sa("a"),
		"sub/b.yml":       sa("b"),
		"sub/deep/c.json": `{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "c"}}`,
		"UPPER.YAML":      sa("upper"),
		// None of these is read, valid or not.
		".git/x.yaml":      sa("git"),
		".hidden.yaml":     sa("hidden"),
		"a.yaml~":          sa("backup"),
		".#a.yaml":         sa("emacs-lock"),
		"#a.yaml#":         sa("emacs-autosave"),
		".a.yaml.swp":      "\x00binary",
		"a.yaml.swp":       "\x00binary",
		".hid/d.yaml":      sa("hidden-dir"),
		"README.md":        "# not config",
		"notes.txt":        "kind: nonsense",
		"sub/.cache/e.yml": sa("cached"),
		// Decision tests (garrison policy test), not configuration.
		"sub/rbac_test.yaml": "- name: a case\n  request: {}\n  expect: {allowed: true}\n",
		"UPPER_TEST.YML":     sa("test-upper"),
		"c_test.json":        "[]",
		// Read, but only warned about.
		"widget.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
	})
	if h.store.Ready() {
		t.Fatal("ready before loading")
	}
	if err := h.src.LoadOnce(); err != nil {
		t.Fatalf("LoadOnce: %v", err)
	}
	snap := h.store.Current()
	if got, want := accounts(snap), []string{"a", "b", "c", "upper"}; !slices.Equal(got, want) {
		t.Fatalf("accounts = %v, want %v", got, want)
	}
	if got := sourceOf(snap, "c"); got != filepath.Join("sub", "deep", "c.json")+":1" {
		t.Errorf("c read from %q", got)
	}
	st := h.src.Status()
	if st.Version != 1 || st.Files != 5 || st.Resources != 4 || len(st.InvalidFiles) != 0 || st.Dir != h.dir {
		t.Errorf("status = %+v", st)
	}
	if len(st.Warnings) != 1 || st.Warnings[0].File != "widget.yaml" {
		t.Errorf("warnings = %+v", st.Warnings)
	}
	if !st.LastSuccess.Equal(h.clock.Now()) || !st.LastAttempt.Equal(h.clock.Now()) {
		t.Errorf("times not from the injected clock: %+v", st)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Errorf("status does not marshal: %v", err)
	}

	// Loading again without changes publishes nothing new.
	if err := h.src.LoadOnce(); err != nil || h.store.Current() != snap {
		t.Errorf("an unchanged reload published a new snapshot (err %v)", err)
	}
}

func TestLoadOnceReportsInvalidFiles(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, map[string]string{
		"good.yaml": sa("good"),
		"bad.yaml":  badPolicy,
	})
	err := h.src.LoadOnce()
	problems, ok := policies.AsProblems(err)
	if !ok || len(problems) != 1 || problems[0].File != "bad.yaml" || problems[0].Line != 6 {
		t.Fatalf("LoadOnce = %v, want bad.yaml:6", err)
	}
	if got := accounts(h.store.Current()); !slices.Equal(got, []string{"good"}) {
		t.Fatalf("published %v", got)
	}
	st := h.src.Status()
	if len(st.InvalidFiles) != 1 {
		t.Fatalf("status = %+v", st)
	}
	inv := st.InvalidFiles[0]
	if inv.File != "bad.yaml" || inv.KeepsLastGood || !inv.Since.Equal(h.clock.Now()) || inv.Problems[0].Line != 6 {
		t.Errorf("invalid file = %+v", inv)
	}
	if st.Files != 2 || st.Resources != 1 || !st.LastSuccess.IsZero() {
		t.Errorf("status = %+v", st)
	}
	if got := h.metric(`garrison_config_reloads_total{result="rejected"}`); got != 1 {
		t.Errorf("rejected reloads = %v", got)
	}
}

func TestEditIsPublished(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{"a.yaml": sa("a"), "b.yaml": sa("b")})
	first := h.run()
	if got := accounts(first); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("initial load: %v", got)
	}
	h.write("a.yaml", sa("a2", "a3"))
	next := h.await(hasAccounts("a2", "a3", "b"))
	if next.Version() <= first.Version() {
		t.Errorf("version went from %d to %d", first.Version(), next.Version())
	}
	if h.src.Status().Version != next.Version() {
		t.Errorf("status version %d, published %d", h.src.Status().Version, next.Version())
	}
}

func TestInvalidChangeKeepsLastGoodUntilFixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{"a.yaml": sa("a"), "b.yaml": sa("b")})
	h.run()

	// Break a.yaml: it keeps serving "a".
	broke := h.clock.Now().Add(time.Minute)
	h.clock.Set(broke)
	h.write("a.yaml", sa("a-new")+"---\n"+badPolicy)
	if got := accounts(h.barrier()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after breaking a.yaml: %v, want the last good a and b", got)
	}
	st := h.src.Status()
	if len(st.InvalidFiles) != 1 {
		t.Fatalf("status = %+v", st)
	}
	inv := st.InvalidFiles[0]
	if inv.File != "a.yaml" || !inv.KeepsLastGood || !inv.Since.Equal(broke) {
		t.Errorf("invalid file = %+v", inv)
	}
	if len(inv.Problems) != 1 || inv.Problems[0].File != "a.yaml" || inv.Problems[0].Line != 11 {
		t.Errorf("problems = %+v, want one at a.yaml:11", inv.Problems)
	}
	if got := h.metric(`garrison_config_reloads_total{result="rejected"}`); got != 1 {
		t.Errorf("rejected reloads = %v", got)
	}
	if got := h.metric("garrison_config_invalid_files"); got != 1 {
		t.Errorf("invalid files gauge = %v", got)
	}

	// Another file's change goes through meanwhile.
	h.clock.Set(broke.Add(time.Minute))
	h.write("b.yaml", sa("b2"))
	h.await(hasAccounts("a", "b2"))
	if st := h.src.Status(); len(st.InvalidFiles) != 1 || !st.InvalidFiles[0].Since.Equal(broke) {
		t.Errorf("a.yaml no longer reported invalid since it broke: %+v", st.InvalidFiles)
	}

	// Fixing it recovers without a restart.
	fixed := broke.Add(2 * time.Minute)
	h.clock.Set(fixed)
	h.write("a.yaml", sa("a-fixed"))
	h.await(hasAccounts("a-fixed", "b2"))
	st = h.src.Status()
	if len(st.InvalidFiles) != 0 || !st.LastSuccess.Equal(fixed) {
		t.Errorf("after the fix: %+v", st)
	}
	if got := h.metric("garrison_config_invalid_files"); got != 0 {
		t.Errorf("invalid files gauge = %v", got)
	}
	if got := h.metric("garrison_config_last_reload_success_timestamp_seconds"); got != float64(fixed.Unix()) {
		t.Errorf("last success = %v, want %v", got, fixed.Unix())
	}
}

func TestNeverValidFileContributesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{"a.yaml": sa("a")})
	h.run()
	h.write("new.yaml", sa("n")+"---\n"+"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: [\n")
	if got := accounts(h.barrier()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a file that never was valid contributed %v", got)
	}
	st := h.src.Status()
	if len(st.InvalidFiles) != 1 || st.InvalidFiles[0].File != "new.yaml" || st.InvalidFiles[0].KeepsLastGood {
		t.Fatalf("status = %+v", st.InvalidFiles)
	}
	h.write("new.yaml", sa("n"))
	h.await(hasAccounts("a", "n"))
}

func TestNewSubdirectoryIsWatched(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{"a.yaml": sa("a")})
	h.run()
	// Created in one go, before the source can watch the new directories.
	h.write("team/x/deep/one.yaml", sa("one"))
	h.write("team/x/two.yaml", sa("two"))
	h.await(hasAccounts("a", "one", "two"))
	// And watched afterwards.
	h.write("team/x/deep/one.yaml", sa("one-edited"))
	h.await(hasAccounts("a", "one-edited", "two"))
	h.write("team/y/three.yml", sa("three"))
	h.await(hasAccounts("a", "one-edited", "three", "two"))
}

func TestDeletedFilesAndDirectoriesLeave(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{
		"a.yaml":       sa("a"),
		"b.yaml":       sa("b"),
		"sub/c.yaml":   sa("c"),
		"sub/d/e.yaml": sa("e"),
	})
	h.run()
	h.remove("b.yaml")
	h.await(hasAccounts("a", "c", "e"))
	h.remove("sub")
	h.await(hasAccounts("a"))
	if st := h.src.Status(); st.Files != 1 || st.Resources != 1 {
		t.Errorf("status = %+v", st)
	}
}

func TestRenamedDirectoryKeepsBeingWatched(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{"old/a.yaml": sa("a"), "old/in/b.yaml": sa("b")})
	h.run()
	if err := os.Rename(filepath.Join(h.dir, "old"), filepath.Join(h.dir, "new")); err != nil {
		t.Fatal(err)
	}
	snap := h.await(func(s *policies.Snapshot) bool { return sourceOf(s, "b") == filepath.Join("new", "in", "b.yaml")+":1" })
	if got := accounts(snap); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after rename: %v", got)
	}
	h.write("new/in/b.yaml", sa("b2"))
	h.await(hasAccounts("a", "b2"))
	// Moved out of the tree: gone.
	if err := os.Rename(filepath.Join(h.dir, "new"), filepath.Join(t.TempDir(), "away")); err != nil {
		t.Fatal(err)
	}
	h.await(hasAccounts())
}

func TestEditorSaveByRename(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 50*time.Millisecond, map[string]string{"a.yaml": sa("a")})
	h.run()
	// vim's backup-and-replace save.
	p := filepath.Join(h.dir, "a.yaml")
	if err := os.Rename(p, p+"~"); err != nil {
		t.Fatal(err)
	}
	h.write(".a.yaml.swp", "\x00swap")
	h.write("a.yaml", sa("a-saved"))
	h.remove("a.yaml~")
	h.remove(".a.yaml.swp")
	h.await(hasAccounts("a-saved"))
}

func TestDuplicateAcrossFilesIsRejected(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{"a.yaml": sa("dup")})
	h.run()

	h.write("b.yaml", sa("other", "dup"))
	snap := h.barrier()
	if got := accounts(snap); !slices.Equal(got, []string{"dup"}) || sourceOf(snap, "dup") != "a.yaml:1" {
		t.Fatalf("accounts = %v, dup from %s: the accepted definition was displaced or b.yaml let in", got, sourceOf(snap, "dup"))
	}
	st := h.src.Status()
	if len(st.InvalidFiles) != 1 || st.InvalidFiles[0].File != "b.yaml" || len(st.InvalidFiles[0].Problems) != 1 {
		t.Fatalf("status = %+v", st.InvalidFiles)
	}
	p := st.InvalidFiles[0].Problems[0]
	if msg := p.Error(); !strings.HasPrefix(msg, "b.yaml:6: ") || !strings.Contains(msg, "a.yaml:1") {
		t.Errorf("problem %q does not name both b.yaml:6 and a.yaml:1", msg)
	}
	if got := h.metric(`garrison_config_reloads_total{result="rejected"}`); got != 1 {
		t.Errorf("rejected reloads = %v", got)
	}

	// Removing the first definition lets b.yaml in, though b.yaml itself
	// did not change.
	h.write("a.yaml", sa("a"))
	snap = h.await(hasAccounts("a", "dup", "other"))
	if got := sourceOf(snap, "dup"); got != "b.yaml:6" {
		t.Errorf("dup from %s, want b.yaml:6", got)
	}
	if st := h.src.Status(); len(st.InvalidFiles) != 0 {
		t.Errorf("still invalid: %+v", st.InvalidFiles)
	}
}

func TestDuplicateAtStartKeepsFirstPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, map[string]string{
		"b.yaml":     sa("dup"),
		"a.yaml":     sa("dup"),
		"c/dup.yaml": sa("x", "x"), // twice in one file
	})
	err := h.src.LoadOnce()
	problems, _ := policies.AsProblems(err)
	if len(problems) != 2 {
		t.Fatalf("LoadOnce = %v", err)
	}
	snap := h.store.Current()
	if got := sourceOf(snap, "dup"); got != "a.yaml:1" || len(accounts(snap)) != 1 {
		t.Errorf("dup from %s, accounts %v", got, accounts(snap))
	}
	for _, want := range []string{"b.yaml:1: ServiceAccount default/dup: already defined at a.yaml:1",
		filepath.Join("c", "dup.yaml") + ":6: ServiceAccount default/x: defined twice in this file, first at line 1"} {
		if !slices.ContainsFunc(problems, func(p *policies.Problem) bool { return strings.HasPrefix(p.Error(), want) }) {
			t.Errorf("no problem %q in\n%v", want, problems)
		}
	}
}

func TestBurstIsDebounced(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond, map[string]string{"a.yaml": sa("a")})
	before := h.run().Version()
	reloadsBefore := h.metric(`garrison_config_reloads_total{result="success"}`)

	// A git checkout: many files, some written twice.
	want := []string{"a"}
	for i := range 50 {
		name := fmt.Sprintf("n%02d", i)
		h.write(fmt.Sprintf("burst/%02d.yaml", i%40), sa(name))
		if i >= 40 || i%40 >= 10 {
			want = append(want, name)
		}
	}
	snap := h.await(hasAccounts(want...))
	published := snap.Version() - before
	reloads := h.metric(`garrison_config_reloads_total{result="success"}`) - reloadsBefore
	t.Logf("50 writes: %d snapshots, %v reloads", published, reloads)
	if published > 5 || reloads > 5 {
		t.Errorf("50 writes gave %d snapshots and %v reloads, want a handful", published, reloads)
	}
}

func TestKubernetesConfigMapSwap(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, nil)
	// The layout kubelet's atomic writer gives a mounted ConfigMap.
	h.write("..2025_01_01/mesh.yaml", sa("v1"))
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(h.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("..2025_01_01", "..data")
	link(filepath.Join("..data", "mesh.yaml"), "mesh.yaml")
	if got := accounts(h.run()); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("initial load through links: %v", got)
	}
	// An update: new timestamped directory, then the ..data link swapped
	// by rename. mesh.yaml itself sees no event.
	h.write("..2025_01_02/mesh.yaml", sa("v2"))
	link("..2025_01_02", "..data_tmp")
	if err := os.Rename(filepath.Join(h.dir, "..data_tmp"), filepath.Join(h.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	h.remove("..2025_01_01")
	h.await(hasAccounts("v2"))
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 20*time.Millisecond, map[string]string{
		"a.yaml": sa("a", "b"),
		"p.yaml": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec: {}\n",
	})
	snap := h.run()
	for series, want := range map[string]float64{
		`garrison_config_resources{kind="ServiceAccount"}`:                        2,
		`garrison_config_resources{kind="AuthorizationPolicy.security.istio.io"}`: 1,
		"garrison_config_snapshot_version":                                        float64(snap.Version()),
		`garrison_config_reloads_total{result="success"}`:                         1,
		`garrison_config_reloads_total{result="rejected"}`:                        0,
		"garrison_config_invalid_files":                                           0,
		"garrison_config_reload_duration_seconds_count":                           1,
		"garrison_config_last_reload_success_timestamp_seconds":                   float64(h.clock.Now().Unix()),
	} {
		if got := h.metric(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	h.remove("p.yaml")
	snap = h.await(hasAccounts("a", "b"))
	if len(snap.Resources()) != 2 {
		t.Fatalf("policy still published: %d resources", len(snap.Resources()))
	}
	if strings.Contains(h.scrape(), "AuthorizationPolicy") {
		t.Error("a kind with no resources left is still exported")
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, map[string]string{"a.yaml": sa("a")})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	snaps := h.store.Subscribe(ctx)
	go func() { done <- h.src.Run(ctx) }()
	select {
	case <-snaps:
	case <-time.After(wait):
		t.Fatal("no initial snapshot")
	}
	if err := h.src.Run(ctx); err == nil {
		t.Error("a second concurrent Run was allowed")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after cancel")
	}
}

// Not parallel: it counts goroutines, which parallel tests would disturb.
func TestRunLeavesNoGoroutines(t *testing.T) {
	dir := t.TempDir()
	store := policies.NewStore(policies.StoreConfig{})
	before := runtime.NumGoroutine()

	src, err := file.New(file.Config{Dir: dir, Store: store, Debounce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	snaps := store.Subscribe(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	for want := uint64(1); want <= 2; want++ {
		select {
		case s := <-snaps:
			if s.Version() != want {
				t.Fatalf("version %d, want %d", s.Version(), want)
			}
		case <-time.After(wait):
			t.Fatal("no snapshot")
		}
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", "a.yaml"), []byte(sa("a")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before Run, %d after", before, runtime.NumGoroutine())
		}
		runtime.Gosched()
	}
}

func TestRunFailsWithoutDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cfg")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := file.New(file.Config{Dir: dir, Store: policies.NewStore(policies.StoreConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	err = src.Run(t.Context())
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want the missing directory", err)
	}
	if st := src.Status(); st.Error == "" {
		t.Errorf("status has no error: %+v", st)
	}
}

func sources(s *policies.Snapshot) string {
	var out []string
	if s != nil {
		for _, r := range s.Resources() {
			out = append(out, r.Key().String()+"@"+r.Source.String())
		}
	}
	return strings.Join(out, ", ")
}

func TestConfigFilesListsWhatSourceReads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"b.yaml", "a/c.json", "a/d.yml", ".git/x.yaml", "notes.txt", "e.yaml~", "a/cases_test.yaml", "f_test.yml"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := file.ConfigFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a/c.json"), filepath.Join(dir, "a/d.yml"), filepath.Join(dir, "b.yaml")}
	if !slices.Equal(got, want) {
		t.Errorf("ConfigFiles = %v, want %v", got, want)
	}
	for name, want := range map[string]bool{
		"rbac_test.yaml": true, "a/b/x_test.yml": true, "X_TEST.JSON": true,
		"test.yaml": false, "contest.yaml": false, "x_test.txt": false, "x_test": false, "x.test.yaml": false,
	} {
		if got := file.IsTestFile(name); got != want {
			t.Errorf("IsTestFile(%q) = %t, want %t", name, got, want)
		}
	}
	if got, _ := file.ConfigFiles(filepath.Join(dir, "notes.txt")); len(got) != 1 {
		t.Errorf("a named file must be read whatever its extension: %v", got)
	}
	if _, err := file.ConfigFiles(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing path must be an error")
	}
}

// BenchmarkLoadOnce loads a tree of 100 files holding 10,000 resources, the
// first-start and git-checkout case, where files are parsed in parallel.
func BenchmarkLoadOnce(b *testing.B) {
	dir := b.TempDir()
	const files, perFile = 100, 100
	for i := range files {
		var sb strings.Builder
		for j := range perFile / 2 {
			fmt.Fprintf(&sb, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-%[1]d-%[2]d, namespace: team-%[1]d}
spec:
  hosts: [svc-%[2]d]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: svc-%[2]d, subset: v2}}]
  - route: [{destination: {host: svc-%[2]d, subset: v1}}]
    timeout: 2s
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: svc-%[1]d-%[2]d, namespace: team-%[1]d}
spec:
  selector: {matchLabels: {app: svc-%[2]d}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/team-%[1]d/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
`, i, j)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.yaml", i)), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		store := policies.NewStore(policies.StoreConfig{})
		src, err := file.New(file.Config{Dir: dir, Store: store})
		if err != nil {
			b.Fatal(err)
		}
		if err := src.LoadOnce(); err != nil {
			b.Fatal(err)
		}
		if n := store.Current().Len(); n != files*perFile {
			b.Fatalf("loaded %d resources", n)
		}
	}
	b.ReportMetric(float64(files*perFile)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// TestLastGoodSurvivesRestart: a file broken while Garrison is down serves
// its last accepted content after the restart, not nothing; a file deleted
// while down stays deleted.
func TestLastGoodSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir, state := t.TempDir(), t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := func() (*file.Source, *policies.Store, error) {
		t.Helper()
		store := policies.NewStore(policies.StoreConfig{})
		src, err := file.New(file.Config{Dir: dir, Store: store, StateDir: state,
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
		if err != nil {
			t.Fatal(err)
		}
		return src, store, src.LoadOnce()
	}
	write("deny.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-all\nspec:\n  action: DENY\n  rules: [{}]\n")
	write("team/sa.yaml", sa("a"))
	write("gone.yaml", sa("b"))
	if _, _, err := start(); err != nil {
		t.Fatal(err)
	}

	// While down: deny.yaml is broken, gone.yaml is deleted.
	write("deny.yaml", badPolicy)
	if err := os.Remove(filepath.Join(dir, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	src, store, err := start()
	if err == nil {
		t.Fatal("the broken file must be reported")
	}
	snap := store.Current()
	if snap.Get(policies.KindAuthorizationPolicy, "default", "deny-all") == nil {
		t.Fatal("the DENY policy of the broken file was lost across the restart")
	}
	if snap.Get(policies.KindServiceAccount, "default", "b") != nil {
		t.Error("a file deleted while down came back from the state dir")
	}
	if snap.Get(policies.KindServiceAccount, "default", "a") == nil {
		t.Error("a valid file in a subdirectory is missing")
	}
	st := src.Status()
	if len(st.InvalidFiles) != 1 || st.InvalidFiles[0].File != "deny.yaml" || !st.InvalidFiles[0].KeepsLastGood {
		t.Errorf("status must show deny.yaml rejected and keeping its last good content: %+v", st.InvalidFiles)
	}
	if _, err := os.Stat(filepath.Join(state, "gone.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the copy of a deleted file must be pruned: %v", err)
	}

	// Fixed while down again: the new content wins over the copy.
	write("deny.yaml", strings.Replace(badPolicy, "MAYBE", "DENY\n  rules: [{to: [{operation: {methods: [DELETE]}}]}]", 1))
	if _, store, err = start(); err != nil {
		t.Fatal(err)
	}
	if store.Current().Get(policies.KindAuthorizationPolicy, "default", "p") == nil ||
		store.Current().Get(policies.KindAuthorizationPolicy, "default", "deny-all") != nil {
		t.Error("the fixed file must replace its last good copy")
	}
}
