package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkAccept is the store's share of accepting a webhook: many
// concurrent callers, each a new pipeline on one of 10,000 statuses.
func BenchmarkAccept(b *testing.B) {
	s, err := OpenSQLite(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := report(fmt.Sprint("status-", i%10000), i, "INPROGRESS")
			if _, err := s.Accept(context.Background(), []Report{r}, newer); err != nil {
				b.Fatal(err)
			}
		}
	})
}
