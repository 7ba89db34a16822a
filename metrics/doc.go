// Package metrics is sbcwatch's Prometheus instrumentation, built on
// prometheus/client_golang.
//
// A Registry holds everything /metrics exposes:
//
//   - the Go runtime and process collectors and sbcwatch_build_info;
//   - HTTP request duration histograms by route pattern, method and code
//     (ObserveHTTP, called by the API's middleware);
//   - the domain state read from the store at scrape time by a
//     StoreCollector (findings per SBC, rule and severity; open findings;
//     the served certificates' not_after per SBC, listener and SNI; the
//     last audit per target; the last poll per SBC; the KPI gauges; the
//     database pool). Its queries are bounded: each scrape waits at most
//     QueryTimeout, and results are reused for MinInterval, so a scrape
//     storm costs the database one set of queries per interval;
//   - per-source counters that a live input reports into through a
//     SourceReporter (Registry.Source): packets received, dropped,
//     malformed, kernel drops, queue depth and spool bytes.
//
// Metric names, labels and the example alert rules are listed in
// README.md next to this file.
package metrics
