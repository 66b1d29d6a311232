package orgs

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestAuditEventsPageNewestFirst(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		other := mustCreateOrg(t, s, "other")
		const total = 7
		for i := range total {
			if err := s.Audit(ctx, org.ID, "kadmin", "test.event", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			if err := s.Audit(ctx, other.ID, "system", "other.event", ""); err != nil {
				t.Fatal(err)
			}
		}

		var details []string
		token := ""
		pages := 0
		for {
			events, next, err := s.ListAuditEvents(ctx, org.ID, 3, token)
			if err != nil {
				t.Fatalf("ListAuditEvents page %d: %v", pages, err)
			}
			pages++
			for _, e := range events {
				if e.OrgID != org.ID || e.ActorKeyID != "kadmin" || e.Action != "test.event" || e.Time.IsZero() {
					t.Errorf("event %+v", e)
				}
				details = append(details, e.Details)
			}
			if next == "" {
				break
			}
			token = next
		}
		if pages != 3 || fmt.Sprint(details) != "[6 5 4 3 2 1 0]" {
			t.Fatalf("got %d pages with %v, want 3 pages newest first [6 .. 0]", pages, details)
		}
	})
}

func TestAuditPageSizeAndTokens(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		for range DefaultAuditPageSize + 1 {
			if err := s.Audit(ctx, "", "kop", "org.create", ""); err != nil {
				t.Fatal(err)
			}
		}
		events, next, err := s.ListAuditEvents(ctx, "", 0, "")
		if err != nil || len(events) != DefaultAuditPageSize || next == "" {
			t.Fatalf("default page: %d events, next %q, %v; want %d and a token", len(events), next, err, DefaultAuditPageSize)
		}
		events, next, err = s.ListAuditEvents(ctx, "", 10_000, "")
		if err != nil || len(events) != DefaultAuditPageSize+1 || next != "" {
			t.Fatalf("big page: %d events, next %q, %v", len(events), next, err)
		}
		for _, bad := range []string{"garbage!", "YQ", "Yi0x"} {
			if _, _, err := s.ListAuditEvents(ctx, "", 10, bad); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("token %q: %v, want ErrInvalidArgument", bad, err)
			}
		}
		if err := s.Audit(ctx, "", "kop", "", ""); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("audit without an action: %v, want ErrInvalidArgument", err)
		}
	})
}
