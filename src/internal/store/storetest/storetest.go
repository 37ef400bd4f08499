// Package storetest gives tests outside the store package a PostgreSQL
// database of their own on the server .ci/run starts, so that they run on
// both stores as the store's own tests do. Without a server a developer's
// run skips them; in CI their absence fails.
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

var made atomic.Int64

// Database makes an empty database for t on the server named by
// BITBUCKET_RELAY_TEST_DATABASE_URL or, with faults, the server of
// BITBUCKET_RELAY_TEST_FAULT_DATABASE_URL that a test may stop and start
// with the script BITBUCKET_RELAY_TEST_PG_CONTROL names (returned as
// control). The database is dropped when the test ends.
func Database(t testing.TB, faults bool) (url, control string) {
	t.Helper()
	variable := "BITBUCKET_RELAY_TEST_DATABASE_URL"
	if faults {
		variable = "BITBUCKET_RELAY_TEST_FAULT_DATABASE_URL"
	}
	admin, control := os.Getenv(variable), os.Getenv("BITBUCKET_RELAY_TEST_PG_CONTROL")
	if admin == "" || (faults && control == "") {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s or BITBUCKET_RELAY_TEST_PG_CONTROL is not set: .ci/run starts PostgreSQL for this test", variable)
		}
		t.Skip("no PostgreSQL: run bash .ci/run, which starts one")
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := fmt.Sprintf("relay_test_%d_%d_%d", os.Getpid(), made.Add(1), time.Now().UnixNano()%1e6)
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	if !faults {
		t.Cleanup(func() {
			a, err := sql.Open("pgx", admin)
			if err != nil {
				return
			}
			defer a.Close()
			_, _ = a.ExecContext(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
		})
	}
	return store.WithDatabase(admin, name), control
}

// Open opens a store of the kind named ("sqlite" or "postgres") for t,
// closed when the test ends.
func Open(t testing.TB, kind string) store.Store {
	t.Helper()
	var st store.Store
	var err error
	switch kind {
	case "sqlite":
		st, err = store.OpenSQLite(context.Background(), t.TempDir())
	case "postgres":
		url, _ := Database(t, false)
		st, err = store.OpenPostgres(context.Background(), url)
	default:
		t.Fatalf("no store %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Kinds are the stores every relay behaviour is tested on.
var Kinds = []string{"sqlite", "postgres"}
