package orgs

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// AuditEvent is one line of an org's audit log. OrgID "" is the operator's
// log (org creation and deletion, operator keys).
type AuditEvent struct {
	ID         int64
	OrgID      string
	ActorKeyID string // the API key that caused it, or "system"
	Action     string // short verb phrase, e.g. "cmek.enable"
	Details    string // free text for humans; never secrets or key bytes
	Time       time.Time
}

// Audit page sizes.
const (
	DefaultAuditPageSize = 50
	MaxAuditPageSize     = 500
)

// Audit appends an event to the org's audit log (orgID "" for operator
// events). It implements encryption.Auditor.
func (s *DB) Audit(ctx context.Context, orgID, actorKeyID, action, details string) error {
	if action == "" {
		return fmt.Errorf("%w: audit event needs an action", ErrInvalidArgument)
	}
	_, err := s.run().exec(ctx, `INSERT INTO audit_events (org_id, actor_key_id, action, details, at) VALUES (?, ?, ?, ?, ?)`,
		orgID, actorKeyID, action, details, toNanos(time.Now()))
	if err != nil {
		return fmt.Errorf("writing audit event %q: %w", action, err)
	}
	return nil
}

// ListAuditEvents returns one page of the org's audit log, newest first.
// pageSize <= 0 means DefaultAuditPageSize; larger than MaxAuditPageSize is
// capped. Pass "" as pageToken for the first page and the returned
// nextPageToken for the next; nextPageToken is "" on the last page.
func (s *DB) ListAuditEvents(ctx context.Context, orgID string, pageSize int, pageToken string) ([]AuditEvent, string, error) {
	if pageSize <= 0 {
		pageSize = DefaultAuditPageSize
	}
	pageSize = min(pageSize, MaxAuditPageSize)
	before, err := decodeAuditPageToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	// One extra row tells whether another page follows.
	rows, err := s.run().query(ctx, `SELECT id, org_id, actor_key_id, action, details, at FROM audit_events
		WHERE org_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, orgID, before, pageSize+1)
	if err != nil {
		return nil, "", fmt.Errorf("listing audit events: %w", err)
	}
	defer rows.Close()
	var events []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var at int64
		if err := rows.Scan(&e.ID, &e.OrgID, &e.ActorKeyID, &e.Action, &e.Details, &at); err != nil {
			return nil, "", fmt.Errorf("listing audit events: %w", err)
		}
		e.Time = fromNanos(at)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing audit events: %w", err)
	}
	if len(events) <= pageSize {
		return events, "", nil
	}
	events = events[:pageSize]
	return events, encodeAuditPageToken(events[pageSize-1].ID), nil
}

// Page tokens are opaque to callers: base64url of "a<id>", where id is the
// last event of the previous page. The "a" leaves room for other formats.
func encodeAuditPageToken(lastID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a" + strconv.FormatInt(lastID, 10)))
}

func decodeAuditPageToken(token string) (int64, error) {
	if token == "" {
		return int64(1<<63 - 1), nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil && len(raw) > 1 && raw[0] == 'a' {
		if id, err := strconv.ParseInt(string(raw[1:]), 10, 64); err == nil && id > 0 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: audit page token %q is not one this server returned: start again with an empty token", ErrInvalidArgument, token)
}
