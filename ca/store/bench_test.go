package store_test

import (
	"context"
	"crypto/rand"
	"math/big"
	"testing"
	"time"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/store"
)

// BenchmarkJournal measures the group-committed journal with 16
// concurrent signers.
func BenchmarkJournal(b *testing.B) {
	st, err := store.Open(context.Background(), store.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	b.SetParallelism(8)
	now := time.Now()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			s, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
			if err := st.Journal(context.Background(), authority.Record{Serial: s, SPIFFEID: "spiffe://cluster.local/ns/default/sa/a",
				NotBefore: now, NotAfter: now.Add(time.Hour), IssuedAt: now, Caller: "bench", SignerID: 2, RootID: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
