package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// planNode is the part of EXPLAIN (ANALYZE, FORMAT JSON) a test reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Removed      float64    `json:"Rows Removed by Filter"`
	Rechecked    float64    `json:"Rows Removed by Index Recheck"`
	ActualRows   float64    `json:"Actual Rows"`
	ActualLoops  float64    `json:"Actual Loops"`
	Plans        []planNode `json:"Plans"`
}

// walk calls fn for n and every node below it.
func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}

// explain runs EXPLAIN ANALYZE on sql and returns the plan's root.
func explain(t *testing.T, st *store.Store, sql string, args ...any) planNode {
	t.Helper()
	var raw []byte
	if err := st.Pool().QueryRow(context.Background(), "explain (analyze, buffers, format json) "+sql, args...).Scan(&raw); err != nil {
		t.Fatalf("explain: %v\n%s", err, sql)
	}
	var out []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out) != 1 {
		t.Fatalf("explain output: %v %s", err, raw)
	}
	return out[0].Plan
}

// TestCallSearchPlanOnABusyNumber stores 200 000 calls, one number in
// 20 000 of them with findings on many, and checks with EXPLAIN ANALYZE
// that a search by that number touches about one page of calls and counts
// findings only for the page, not for every match; then that the answer
// is the one the plain query gives. Rows, not timings.
func TestCallSearchPlanOnABusyNumber(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: -short: builds a 200 000-call table")
	}
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	db := st.Pool()
	const calls, every = 200000, 10
	t0 := time.Now().UTC().Add(-30 * time.Hour).Truncate(time.Hour)
	if _, err := db.Exec(ctx, `insert into sbcs (name) values ('sbc1')`); err != nil {
		t.Fatal(err)
	}
	// Call i starts at t0+i s; every tenth is from the busy number, every
	// 1000th (shifted by 5) is to it; every 200th (shifted by 7) is to a
	// number of middling traffic; one call has a rare caller.
	if _, err := db.Exec(ctx, fmt.Sprintf(`insert into calls (sbc, call_id, kind, from_digits, to_digits, start_time, last_time)
	  select 'sbc1', 'c' || i, 'invite',
	    case when i %% %d = 0 then '4930999' when i = 777 then '4940777' else '4930' || i end,
	    case when i %% 1000 = 5 then '4930999' when i %% 200 = 7 then '4930888' else '4969' || (i %% 5000) end,
	    $1::timestamptz + i * interval '1 second', $1::timestamptz + i * interval '1 second'
	  from generate_series(1, %d) i`, every, calls), t0); err != nil {
		t.Fatal(err)
	}
	// Findings on every busy call of the last 10 000 and on the first
	// thousand: the per-call count must still run for one page only.
	ts := []time.Time{t0, t0.Add(calls * time.Second)}
	if err := store.EnsurePartitions(ctx, db, "findings", ts); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `insert into findings (time, id, rule, severity, severity_rank, call_id, sbc, summary)
	  select c.start_time, 'f' || c.id, 'short_call', 'info', 3, c.call_id, 'sbc1', 'short'
	  from calls c where c.from_digits = '4930999' and (c.id > $1 or c.id < 1000)`, calls-10000); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "analyze calls; analyze findings"); err != nil {
		t.Fatal(err)
	}
	const limit = 100
	for _, tc := range []struct {
		number string
		want   int // matches
		paged  bool
	}{{"+4930999", calls/every + calls/1000, true}, {"4930888", calls / 200, true}, {"4940777", 1, true}, {"+4969 4321", calls / 5000, true},
		// A short suffix ends thousands of distinct numbers: the search
		// falls back to the suffix range and a sort, and must still be right.
		{"77", 200000, false}} {
		sql, args, _, err := store.ListCallsSQL(ctx, db, store.CallQuery{Number: tc.number, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		root := explain(t, st, sql, args...)
		var callRows, findingLoops float64
		root.walk(func(n planNode) {
			switch {
			case n.RelationName == "calls":
				// Rows read, whether kept or filtered out.
				callRows += (n.ActualRows + n.Removed + n.Rechecked) * n.ActualLoops
				if n.NodeType == "Seq Scan" {
					t.Errorf("number %s: sequential scan of calls", tc.number)
				}
			case strings.HasPrefix(n.RelationName, "findings"):
				findingLoops = max(findingLoops, n.ActualLoops)
			}
		})
		// Each side of the union reads at most one page (plus the row
		// that says another page exists).
		if tc.paged && callRows > 2*(limit+1) {
			t.Errorf("number %s (%d calls): read %v call rows for a page of %d", tc.number, tc.want, callRows, limit)
		}
		if tc.paged && findingLoops > limit+1 {
			t.Errorf("number %s: findings looked up %v times for a page of %d", tc.number, findingLoops, limit)
		}
		page, err := store.ListCalls(ctx, db, store.CallQuery{Number: tc.number, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		// The plain query: every call whose number ends in the digits.
		rows, err := db.Query(ctx, `select c.call_id from calls c
		  where c.from_digits like '%' || $1 or c.to_digits like '%' || $1
		  order by c.start_time desc, c.id desc limit $2`, store.NumberSuffix(tc.number), limit)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			want = append(want, id)
		}
		var got []string
		findings := 0
		for _, c := range page.Items {
			got = append(got, c.CallID)
			findings += c.FindingCount
		}
		if !slices.Equal(got, want) || (tc.paged && len(got) != min(limit, tc.want)) || len(got) == 0 {
			t.Errorf("number %s: got %d calls %v…, want %d %v…", tc.number, len(got), got[:min(3, len(got))], len(want), want[:min(3, len(want))])
		}
		if tc.number == "+4930999" {
			// The next page is as cheap: the cursor is an index bound.
			sql, args, _, err := store.ListCallsSQL(ctx, db, store.CallQuery{Number: tc.number, Limit: limit, Cursor: page.NextCursor})
			if err != nil || page.NextCursor == "" {
				t.Fatalf("next page: %v, cursor %q", err, page.NextCursor)
			}
			var rows float64
			explain(t, st, sql, args...).walk(func(n planNode) {
				if n.RelationName == "calls" {
					rows += (n.ActualRows + n.Removed + n.Rechecked) * n.ActualLoops
				}
			})
			if rows > 2*(limit+1) {
				t.Errorf("busy number, page 2: read %v call rows", rows)
			}
		}
		if tc.number == "+4930999" && findings != limit {
			// The newest 100 matches are calls from the number, each
			// with a finding.
			t.Errorf("busy number: %d findings on the first page, want %d", findings, limit)
		}
	}
}

// TestCallLookupPlans stores 50 000 calls with 350 000 SIP messages and
// checks with EXPLAIN ANALYZE that the lookups of one call use the
// indexes migration 009 left: its messages through the hash index on
// sip_messages.call_id, the call by Call-ID (with or without its SBC)
// through the unique key (call_id, sbc, start_time). Rows, not timings.
func TestCallLookupPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: -short: builds a 350 000-message table")
	}
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	db := st.Pool()
	const calls, per = 50000, 7
	t0 := time.Now().UTC().Add(-30 * time.Hour).Truncate(24 * time.Hour)
	if err := store.EnsurePartitions(ctx, db, "sip_messages", []time.Time{t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `insert into calls (sbc, call_id, kind, start_time, last_time)
	  select 'sbc' || (i % 3), 'c' || i || '@192.0.2.10', 'invite', $1::timestamptz + i * interval '1 second', $1::timestamptz + i * interval '1 second'
	  from generate_series(1, $2::int) i`, t0, calls); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `insert into sip_messages (time, id, sbc, src, dst, is_request, call_id, raw)
	  select $1::timestamptz + (i / $3) * interval '1 second' + (i % $3) * interval '1 millisecond', gen_random_uuid(),
	    'sbc' || ((i / $3) % 3), '192.0.2.10:5060', '198.51.100.7:5060', true, 'c' || (i / $3) || '@192.0.2.10', 'INVITE'
	  from generate_series($3::int, ($2::int + 1) * $3 - 1) i`, t0, calls, per); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "analyze calls; analyze sip_messages"); err != nil {
		t.Fatal(err)
	}
	// read adds up the rows each scan of table read (kept or filtered
	// out) and fails on a sequential scan.
	read := func(what, table string, root planNode) (rows float64, index string) {
		root.walk(func(n planNode) {
			if strings.HasPrefix(n.IndexName, table) {
				index = n.IndexName // also of a Bitmap Index Scan, which names no relation
			}
			if !strings.HasPrefix(n.RelationName, table) {
				return
			}
			if n.NodeType == "Seq Scan" {
				t.Errorf("%s: sequential scan of %s", what, n.RelationName)
			}
			rows += (n.ActualRows + n.Removed + n.Rechecked) * n.ActualLoops
		})
		return rows, index
	}
	const callID = "c31336@192.0.2.10" // on sbc1
	rows, index := read("messages of a call", "sip_messages", explain(t, st, store.CallMessagesSQL, callID, "sbc1"))
	if rows != per || !strings.HasPrefix(index, "sip_messages_") || !strings.HasSuffix(index, "call_id_idx") {
		t.Errorf("messages of a call: read %v rows through %q, want %d through the call_id index", rows, index, per)
	}
	ms, err := store.CallMessages(ctx, db, "sbc1", callID)
	if err != nil || len(ms) != per || ms[0].Time.After(ms[1].Time) || len(ms[0].ID) != 32 {
		t.Fatalf("messages = %d, %v", len(ms), err)
	}
	for _, sbc := range []string{"sbc1", ""} {
		sql, args := store.GetCallSQL(callID, sbc)
		root := explain(t, st, sql, args...)
		rows, index := read("call by Call-ID", "calls", root)
		if rows > 1 || index != "calls_call_id_sbc_start_time_key" {
			t.Errorf("call by Call-ID (sbc %q): read %v rows through %q", sbc, rows, index)
		}
	}
	if c, err := store.GetCall(ctx, db, callID, ""); err != nil || c.SBC != "sbc1" {
		t.Fatalf("GetCall = %+v, %v", c, err)
	}
}
