package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// BenchmarkSaveReport saves a capture of 2000 calls with 10 messages each
// (20 000 SIP messages) per iteration; every iteration is a new capture of
// an hour of its own, as `analyze --store` of a new file is.
func BenchmarkSaveReport(b *testing.B) {
	st, _ := storetest.New(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		base := time.Now().UTC().Add(-6*time.Hour - time.Duration(i)*time.Hour)
		r := &report.Report{}
		for j := range 2000 {
			c := storetest.PlainCall(base.Add(time.Duration(j)*time.Second), fmt.Sprintf("b%d-%d", i, j), "+4930123", "+4969123456")
			for k := range 8 {
				m := *c.Messages[1]
				m.Time = m.Time.Add(time.Duration(k+1) * time.Millisecond)
				c.Messages = append(c.Messages, &m)
			}
			r.CallRecords = append(r.CallRecords, c)
		}
		if err := st.SaveReport(ctx, "sbc1", fmt.Sprintf("bench-%d", i), r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n, _ := store.TableCounts(ctx, st.Pool())
	b.ReportMetric(float64(n["sip_messages"])/b.Elapsed().Seconds(), "msgs/s")
}
