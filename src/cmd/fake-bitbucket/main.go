// Command fake-bitbucket serves fakebitbucket.Server for the shell-level
// tests (gitlab-ci-local, the container image, benchmarks). It is a test
// tool: it is not shipped in the image. The credential it expects comes from
// the environment (FAKE_BITBUCKET_TOKEN, FAKE_BITBUCKET_USER), never argv.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file once ready")
	cert := flag.String("tls-cert", "", "serve https with this certificate (PEM)")
	key := flag.String("tls-key", "", "and this key (PEM)")
	flag.Parse()

	s := &fakebitbucket.Server{
		User: os.Getenv("FAKE_BITBUCKET_USER"), Token: os.Getenv("FAKE_BITBUCKET_TOKEN"),
		ClientID: os.Getenv("FAKE_BITBUCKET_CLIENT_ID"), ClientSecret: os.Getenv("FAKE_BITBUCKET_CLIENT_SECRET"),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Fprintf(os.Stderr, "fake-bitbucket: listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if *cert != "" {
		err = srv.ServeTLS(ln, *cert, *key)
	} else {
		err = srv.Serve(ln)
	}
	log.Fatal(err)
}
