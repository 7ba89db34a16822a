package store

// ListCallsSQL exposes the query ListCalls runs, for the plan test.
var ListCallsSQL = listCallsSQL
