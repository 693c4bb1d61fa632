package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/garrison-mesh/garrison/ca/authority"
)

// BenchmarkCommit is the journal's cost per record by batch size.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			st, err := Open(context.Background(), Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = st.Close() }()
			now := time.Now()
			batch := make([]journalReq, n)
			for b.Loop() {
				for i := range batch {
					s, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
					batch[i] = journalReq{r: authority.Record{Serial: s, SPIFFEID: "spiffe://cluster.local/ns/default/sa/a",
						NotBefore: now, NotAfter: now.Add(time.Hour), IssuedAt: now, Caller: "bench", SignerID: 2, RootID: 1}, done: make(chan error, 1)}
				}
				st.commit(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/record")
		})
	}
}

// TestJournalRefusesDuplicateSerial: within a batch and across batches, a
// serial already journaled is answered ErrDuplicateSerial while the other
// records of the batch go in.
func TestJournalRefusesDuplicateSerial(t *testing.T) {
	st, err := Open(context.Background(), Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	now := time.Now()
	rec := func(s int64, caller string) journalReq {
		return journalReq{r: authority.Record{Serial: big.NewInt(s), SPIFFEID: "spiffe://cluster.local/ns/a/sa/b", NotBefore: now,
			NotAfter: now.Add(time.Hour), IssuedAt: now, Caller: caller}, done: make(chan error, 1)}
	}
	first := []journalReq{rec(1, "x"), rec(2, "x")}
	st.commit(first)
	for _, r := range first {
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
	}
	second := []journalReq{rec(3, "y"), rec(2, "y"), rec(4, "y"), rec(4, "y")}
	st.commit(second)
	for i, want := range []error{nil, authority.ErrDuplicateSerial, nil, authority.ErrDuplicateSerial} {
		if err := <-second[i].done; err != want {
			t.Errorf("record %d: %v, want %v", i, err, want)
		}
	}
	c, err := st.Counts(context.Background(), now)
	if err != nil || c.Issued != 4 {
		t.Fatalf("counts %+v %v", c, err)
	}
}
