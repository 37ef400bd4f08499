package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"modernc.org/sqlite"
)

// failingCommits is SQLite's driver whose commits fail while fail is set,
// after every statement of the transaction succeeded: what a full disk
// does, since SQLite writes a transaction's pages out at commit.
type failingCommits struct {
	*sqlite.Driver
	fail *atomic.Bool
}

func (d failingCommits) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return failingConn{Conn: c, fail: d.fail}, nil
}

type failingConn struct {
	driver.Conn
	fail *atomic.Bool
}

func (c failingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return failingTx{Tx: tx, fail: c.fail}, nil
}

type failingTx struct {
	driver.Tx
	fail *atomic.Bool
}

func (t failingTx) Commit() error {
	if t.fail.Load() {
		_ = t.Tx.Rollback()
		return errors.New("database or disk is full (SQLITE_FULL)")
	}
	return t.Tx.Commit()
}

var failDriver atomic.Int64

// openFailingSQLite is an embedded store whose commits fail while *fail.
func openFailingSQLite(t *testing.T) (*SQLite, *atomic.Bool) {
	t.Helper()
	fail := &atomic.Bool{}
	name := "sqlite-failing-" + string(rune('a'+failDriver.Add(1)))
	sql.Register(name, failingCommits{Driver: &sqlite.Driver{}, fail: fail})
	s, err := openSQLite(context.Background(), t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fail
}

// readOnly makes a PostgreSQL store's database refuse writes (as a server
// turned read-only or out of disk does) while on is true, for its existing
// connections too.
func readOnly(t *testing.T, s *Postgres, on bool) {
	t.Helper()
	var name string
	if err := s.db.QueryRow(`SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", WithDatabase(s.url, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	setting := "SET default_transaction_read_only = on"
	if !on {
		setting = "RESET default_transaction_read_only"
	}
	for _, q := range []string{"ALTER DATABASE " + name + " " + setting,
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "' AND pid <> pg_backend_pid()"} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAClaimThatDidNotCommitHandsOutNothing: on a store that cannot write,
// a claim returns an error and no row (the relay would post it again and
// again otherwise), Accept fails (the webhook gets 503, never 202), Ping
// fails (/readyz), and everything works again once writes do.
func TestAClaimThatDidNotCommitHandsOutNothing(t *testing.T) {
	t.Parallel()
	sqliteStore, fail := openFailingSQLite(t)
	stores := map[string]struct {
		s     Store
		fault func(on bool)
	}{"sqlite": {sqliteStore, fail.Store}}
	if url := testPostgresURL(t); url != "" {
		pg := openTestPostgres(t).(*Postgres)
		stores["postgres"] = struct {
			s     Store
			fault func(on bool)
		}{pg, func(on bool) { readOnly(t, pg, on) }}
	}
	for name, c := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := c.s
			if _, err := s.Accept(ctx, []Report{report("a", 1, "SUCCESSFUL")}, always); err != nil {
				t.Fatal(err)
			}
			c.fault(true)
			for range 3 {
				rows, err := s.Claim(ctx, Claim{Owner: "w", Lease: time.Minute, Limit: 10})
				if err == nil || len(rows) != 0 {
					t.Fatalf("a claim that did not commit: %d rows, %v", len(rows), err)
				}
			}
			if changed, err := s.Accept(ctx, []Report{report("b", 1, "SUCCESSFUL")}, always); err == nil {
				t.Fatalf("an accept that did not commit succeeded: %v", changed)
			}
			err := s.Ping(ctx)
			if err == nil || !(strings.Contains(err.Error(), "full") || strings.Contains(err.Error(), "read-only")) {
				t.Fatalf("Ping on a store that cannot write: %v", err)
			}
			c.fault(false)
			deadline := time.Now().Add(10 * time.Second)
			for s.Ping(ctx) != nil {
				if time.Now().After(deadline) {
					t.Fatal("the store did not recover")
				}
				time.Sleep(50 * time.Millisecond)
			}
			rows, err := s.Claim(ctx, Claim{Owner: "w", Lease: time.Minute, Limit: 10})
			if err != nil || len(rows) != 1 || rows[0].StatusID != "a" || rows[0].Attempts != 0 {
				t.Fatalf("after recovery: %+v %v", rows, err)
			}
			if r, _ := s.Get(ctx, "b"); r != nil {
				t.Fatalf("a failed accept left a row: %+v", r)
			}
		})
	}
}
