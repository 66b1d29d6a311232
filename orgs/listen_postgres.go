package orgs

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The PostgreSQL change feed: one connection per DB that LISTENs on
// notifyChannel and hands each notification to the change hub.
//
// The bounds promised by Watch come from these numbers: a dropped
// connection is usually noticed at once (the server closes it); one that
// silently stops answering is noticed within listenPingInterval +
// listenPingTimeout (3 s). Either way a Resync goes out then, and again at
// every reconnect attempt (at most listenRetryMaxDelay +
// listenConnectTimeout apart) until the feed is back, when a last Resync
// covers whatever changed while it was down.
const (
	listenPingInterval   = time.Second
	listenPingTimeout    = 2 * time.Second
	listenConnectTimeout = 3 * time.Second
	listenRetryMinDelay  = 100 * time.Millisecond
	listenRetryMaxDelay  = 2 * time.Second
	// listenApplicationName names the connection in pg_stat_activity.
	listenApplicationName = "sealcache-listen"
)

// listenPostgres runs the change feed until the DB is closed.
func (s *DB) listenPostgres(cfg *pgx.ConnConfig) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	delay := listenRetryMinDelay
	for {
		conn, err := s.connectListener(ctx, cfg)
		if err == nil {
			// Changes committed before LISTEN took effect were not
			// notified to us: watchers re-read.
			s.changes.publish(Change{Kind: Resync})
			s.changes.setListening(true)
			connected := time.Now()
			err = s.receiveChanges(ctx, conn)
			s.changes.setListening(false)
			// Back off again only if the connection keeps dropping at once.
			if time.Since(connected) > listenRetryMaxDelay {
				delay = listenRetryMinDelay
			}
			closeCtx, cancelClose := context.WithTimeout(context.Background(), time.Second)
			conn.Close(closeCtx)
			cancelClose()
		}
		if ctx.Err() != nil {
			return
		}
		// Notifications sent while we are not listening are lost for good.
		slog.Warn("metadata change feed: not receiving other nodes' changes; caches are flushed until it is back", "error", err, "retry_in", delay)
		s.changes.publish(Change{Kind: Resync})
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(2*delay, listenRetryMaxDelay)
	}
}

func (s *DB) connectListener(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	if hook := s.beforeListenerConnect; hook != nil {
		hook(ctx)
	}
	cfg = cfg.Copy()
	cfg.RuntimeParams["application_name"] = listenApplicationName
	ctx, cancel := context.WithTimeout(ctx, listenConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

// receiveChanges publishes notifications until the connection fails or
// ctx ends. While no notification comes it pings the server every
// listenPingInterval, so a connection that died silently is noticed.
func (s *DB) receiveChanges(ctx context.Context, conn *pgx.Conn) error {
	for {
		wait, cancel := context.WithTimeout(ctx, listenPingInterval)
		n, err := conn.WaitForNotification(wait)
		cancel()
		if n != nil && n.Channel == notifyChannel {
			s.changes.publish(decodeChange(n.Payload))
		}
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) && !conn.IsClosed():
			// Quiet for a while: is the server still there? Notifications
			// that arrive meanwhile are buffered by pgx and returned by
			// the next WaitForNotification.
			ping, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err = conn.Ping(ping)
			cancel()
			if err == nil {
				continue
			}
		}
		return err
	}
}
