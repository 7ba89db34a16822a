package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateSession starts a browser session for the token with id tokenID,
// ending after ttl, and returns its id (random, shown once; only its hash
// is kept). Sessions that ended more than a day ago are deleted on the way.
func CreateSession(ctx context.Context, db DBTX, tokenID int64, ttl time.Duration) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("store: session: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	if _, err := db.Exec(ctx, `delete from web_sessions where expires_at < now() - interval '1 day'
or revoked_at < now() - interval '1 day'`); err != nil {
		return "", fmt.Errorf("store: session: %w", err)
	}
	_, err := db.Exec(ctx, `insert into web_sessions (hash, token_id, expires_at) values ($1, $2, now() + $3::interval)`,
		HashToken(id), tokenID, fmt.Sprintf("%d milliseconds", ttl.Milliseconds()))
	if err != nil {
		return "", fmt.Errorf("store: session: %w", err)
	}
	return id, nil
}

// LookupSession returns the token behind a live session: not expired, not
// signed out, and its token not revoked. Anything else is ErrNotFound.
func LookupSession(ctx context.Context, db DBTX, id string) (Token, error) {
	var t Token
	if id == "" {
		return t, ErrNotFound
	}
	err := db.QueryRow(ctx, `select t.id, t.name, t.scope, t.created_at, t.revoked_at
from web_sessions s join api_tokens t on t.id = s.token_id
where s.hash = $1 and s.revoked_at is null and s.expires_at > now() and t.revoked_at is null`,
		HashToken(id)).Scan(&t.ID, &t.Name, &t.Scope, &t.CreatedAt, &t.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("store: session lookup: %w", err)
	}
	return t, nil
}

// RevokeSession ends a session (sign-out). An unknown or ended session is
// not an error.
func RevokeSession(ctx context.Context, db DBTX, id string) error {
	if id == "" {
		return nil
	}
	if _, err := db.Exec(ctx, `update web_sessions set revoked_at = now() where hash = $1 and revoked_at is null`, HashToken(id)); err != nil {
		return fmt.Errorf("store: revoke session: %w", err)
	}
	return nil
}
