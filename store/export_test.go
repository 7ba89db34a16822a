package store

import "context"

// ListCallsSQL exposes the query ListCalls runs, for the plan test.
func ListCallsSQL(ctx context.Context, db DBTX, q CallQuery) (string, []any, int, error) {
	var nv *numberValues
	if q.Number != "" {
		var err error
		if nv, err = findNumberValues(ctx, db, NumberSuffix(q.Number)); err != nil {
			return "", nil, 0, err
		}
	}
	return listCallsSQL(q, nv)
}

// CallMessagesSQL is CallMessages' query ($1 Call-ID, $2 SBC).
const CallMessagesSQL = callMessagesSQL

// GetCallSQL exposes GetCall's query, for the plan test.
func GetCallSQL(callID, sbc string) (string, []any) { return getCallSQL(callID, sbc) }
