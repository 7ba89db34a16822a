// Package authctx carries an already-authenticated API token in a
// request's context, for requests made in process: the pages sign a
// browser in with a session, then read the API as that session's token
// without ever holding the token itself. Only code in this process can
// put a value in a context, so a request from the network cannot.
package authctx

import (
	"context"

	"github.com/sbcwatch/sbcwatch/store"
)

type key struct{}

// With returns ctx carrying t.
func With(ctx context.Context, t store.Token) context.Context {
	return context.WithValue(ctx, key{}, t)
}

// From returns the token ctx carries, if any.
func From(ctx context.Context) (store.Token, bool) {
	t, ok := ctx.Value(key{}).(store.Token)
	return t, ok && t.ID != 0
}
