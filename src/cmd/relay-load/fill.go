package main

import (
	"context"
	"crypto/sha1"
	"fmt"
	"log"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// fill writes statuses and their history into a relay's store through the
// store's own Accept, as webhooks would (one history entry per event): n
// statuses over n/100 projects, each taking rounds events, so that the
// status page is measured on a full store. PostgreSQL when database is set,
// else the embedded store in dir.
func fill(dir, database string, n, rounds int) {
	ctx := context.Background()
	var st store.Store
	var err error
	if database != "" {
		st, err = store.OpenPostgres(ctx, database)
	} else {
		st, err = store.OpenSQLite(ctx, dir)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	keep := func(*store.Row, store.Report) (store.Decision, string) {
		return store.Replace, "pipeline replaces the one before: filled by relay-load"
	}
	start := time.Now()
	const batch = 500
	for round := range rounds {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for from := 0; from < n; from += batch {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				var reports []store.Report
				for i := from; i < min(from+batch, n); i++ {
					project := fmt.Sprintf("acme/project-%d", i/100)
					commit := fmt.Sprintf("%x", sha1.Sum([]byte(fmt.Sprint(i))))
					reports = append(reports, store.Report{StatusID: "cloud|https://api.bitbucket.org/2.0|" + project + "|" + commit + "|gitlab/" + project,
						Credential: "default", Server: "https://api.bitbucket.org/2.0", PipelineID: int64(round*n + i + 1), State: "SUCCESSFUL", Final: true,
						FinishedAt: time.Now(), ProjectPath: project, Commit: commit, Source: "push, webhook",
						// Where the relay will try to post it: a closed port, refused at once.
						Body: []byte(fmt.Sprintf(`{"pipeline":{"ID":%d,"SHA":%q,"ProjectPath":%q,"Status":"success","URL":"https://gitlab.example.com/p"},`+
							`"destination":{"Cloud":{"API":"http://127.0.0.1:9/2.0","Workspace":"acme","Slug":"p"},"Credential":"default"}}`, round*n+i+1, commit, project))})
				}
				if _, err := st.Accept(ctx, reports, keep); err != nil {
					log.Fatal(err)
				}
			}()
		}
		wg.Wait()
	}
	fmt.Printf("{\"statuses\":%d,\"history\":%d,\"seconds\":%.1f}\n", n, n*rounds, time.Since(start).Seconds())
}
