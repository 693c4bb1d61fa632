package authority_test

import (
	"bufio"
	"context"
	"crypto/elliptic"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
)

// crashDirEnv tells the re-executed test binary to be the child that
// issues certificates until it is killed.
const crashDirEnv = "GARRISON_CA_CRASH_CHILD_DIR"

// TestCrashChild is the child of TestKill9DuringIssuance; it does nothing
// in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestKill9DuringIssuance")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := selfsigned.New(selfsigned.Config{TrustDomain: td})
	ca, err := authority.New(ctx, authority.Config{TrustDomain: td, Upstream: up, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(t, elliptic.P256())
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/crash")
	// Several concurrent signers, so that the kill lands in the middle of
	// group commits as well as between them.
	for w := 0; w < 4; w++ {
		go func() {
			for {
				iss, err := ca.Sign(ctx, authority.SignRequest{PublicKey: key.Public(), ID: id, Caller: "crash"})
				if err != nil {
					fmt.Fprintln(os.Stderr, "sign:", err)
					os.Exit(3)
				}
				// One write per certificate: what the parent reads was
				// returned by Sign.
				fmt.Fprintln(os.Stdout, authority.FormatSerial(iss.Serial))
			}
		}()
	}
	select {}
}

func TestKill9DuringIssuance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	returned := map[string]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		returned[sc.Text()] = true
		if len(returned) == 300 {
			// Killed while the signers keep going.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	for sc.Scan() {
		returned[sc.Text()] = true
	}
	_ = cmd.Wait()
	if len(returned) < 300 {
		t.Fatalf("child returned only %d certificates before dying", len(returned))
	}

	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := st.Issued(ctx, authority.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	journaled := map[string]bool{}
	for _, r := range recs {
		journaled[authority.FormatSerial(r.Serial)] = true
	}
	for s := range returned {
		if !journaled[s] {
			t.Errorf("certificate %s was returned but is not in the journal", s)
		}
	}
	t.Logf("%d certificates returned before the kill, %d journaled", len(returned), len(journaled))

	// The CA comes back with the same root, and goes on without reusing a
	// serial (the journal's primary key would refuse one; the authority
	// draws again).
	up, _ := selfsigned.New(selfsigned.Config{TrustDomain: td})
	ca, err := authority.New(ctx, authority.Config{TrustDomain: td, Upstream: up, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(t, elliptic.P256())
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/after")
	for range 50 {
		iss, err := ca.Sign(ctx, authority.SignRequest{PublicKey: key.Public(), ID: id, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if s := authority.FormatSerial(iss.Serial); journaled[s] || returned[s] {
			t.Fatalf("serial %s reused", s)
		}
	}
	c, err := st.Counts(ctx, time.Now())
	if err != nil || c.Issued != int64(len(journaled)+50) {
		t.Fatalf("counts %+v, %v", c, err)
	}
}
