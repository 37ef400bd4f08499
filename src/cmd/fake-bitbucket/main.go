// Command fake-bitbucket serves fakebitbucket.Server for the shell-level
// tests (gitlab-ci-local, the container image, benchmarks) and for the
// pipeline's self-test, where it runs as a service container. It is a test
// tool, not shipped in the bitbucket-status image. The credential it expects
// comes from the environment (FAKE_BITBUCKET_TOKEN, FAKE_BITBUCKET_USER,
// FAKE_BITBUCKET_CLIENT_ID, FAKE_BITBUCKET_CLIENT_SECRET), never argv.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file once ready")
	cert := flag.String("tls-cert", "", "serve https with this certificate (PEM)")
	key := flag.String("tls-key", "", "and this key (PEM)")
	selfSigned := flag.String("self-signed", "", "serve https with a certificate for this host name from a CA made at start")
	caListen := flag.String("ca-listen", "", "with -self-signed: serve the CA certificate at http://ADDR/ca.pem")
	dcVersion := flag.String("dc-version", "", "the Bitbucket Data Center version to behave as (default 9.4): 7.21 has no CANCELLED, 7.3 no builds API, 6.10 no capabilities")
	notFound := flag.String("not-found-shape", "", "how Data Center answers an unknown route: null-for-uri, http-404 or xml (default by version)")
	delay := flag.Duration("delay", 0, "answer every request this much later (a slow Bitbucket, for benchmarks)")
	rateLimited := flag.Duration("rate-limited-for", 0, "answer every request with Cloud's 429 (plain text, no Retry-After) for this long after start")
	flag.Parse()

	s := &fakebitbucket.Server{
		User: os.Getenv("FAKE_BITBUCKET_USER"), Token: os.Getenv("FAKE_BITBUCKET_TOKEN"),
		ClientID: os.Getenv("FAKE_BITBUCKET_CLIENT_ID"), ClientSecret: os.Getenv("FAKE_BITBUCKET_CLIENT_SECRET"),
		DataCenterVersion: *dcVersion, NotFoundShape: *notFound,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	var handler http.Handler = s
	if *delay > 0 || *rateLimited > 0 {
		started := time.Now()
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/_") {
				s.ServeHTTP(w, r)
				return
			}
			time.Sleep(*delay)
			if time.Since(started) < *rateLimited {
				rateLimitedRequests.Add(1)
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = w.Write([]byte("Rate limit for this resource has been exceeded"))
				return
			}
			s.ServeHTTP(w, r)
		})
	}
	http.HandleFunc("/_rate-limited", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, rateLimitedRequests.Load()) })
	srv := &http.Server{Handler: mux(handler), ReadHeaderTimeout: 10 * time.Second}
	if *selfSigned != "" {
		caPEM, leaf, err := selfSignedCertificate(*selfSigned)
		if err != nil {
			log.Fatal(err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
		if *caListen != "" {
			mux := http.NewServeMux()
			mux.HandleFunc("/ca.pem", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(caPEM) })
			go func() {
				log.Fatal((&http.Server{Addr: *caListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe())
			}()
		}
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
	switch {
	case *selfSigned != "":
		err = srv.ServeTLS(ln, "", "")
	case *cert != "":
		err = srv.ServeTLS(ln, *cert, *key)
	default:
		err = srv.Serve(ln)
	}
	log.Fatal(err)
}

// rateLimitedRequests counts the 429s answered, for benchmarks (GET /_rate-limited).
var rateLimitedRequests atomic.Int64

func mux(h http.Handler) http.Handler {
	m := http.NewServeMux()
	m.Handle("/_rate-limited", http.DefaultServeMux)
	m.Handle("/", h)
	return m
}

// selfSignedCertificate makes a CA and a server certificate for host signed
// by it; it returns the CA in PEM and the server's key pair.
func selfSignedCertificate(host string) ([]byte, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake-bitbucket test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leafTemplate := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip := net.ParseIP(host); ip != nil {
		leafTemplate.IPAddresses = []net.IP{ip}
	} else {
		leafTemplate.DNSNames = []string{host}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, nil
}
