// Package poll reads an AudioCodes SBC's call counters, over SNMP
// (AC-KPI-MIB, v2c or v3 authPriv) or over the device REST API (/kpi,
// with the older performanceMonitoring API as a fallback), and turns them
// into samples and findings.
//
// A Reader reads one SBC once and returns a Reading: the raw values of
// the global scope and of each IP Group, keyed by snake_case counter
// names (Counters lists them with their OIDs and REST ids), with nil for
// objects the SBC reports as not supported (-1 over SNMP, null over
// REST). A Tracker differences successive Readings into Samples (value,
// delta, rate per second, reset flag) and Intervals; derived series
// (Health Dashboard NER, interval average call duration, short-call
// ratio) are Samples too. A SpikeDetector applies short_calls_spike to
// the Intervals. The Scheduler runs all of this per SBC on its interval,
// with jitter, per-attempt timeouts, retries with backoff and a bound on
// concurrent polls, and raises sbc_unreachable after N consecutive
// misses. README.md documents the OIDs, REST ids and the rule's math.
package poll
