// Command relay-load is the load generator of .ci/bench-relay (a test tool,
// not shipped). It sends real-shaped Pipeline Hooks to a relay and reports
// accepted webhooks per second and the time to each answer, and serves the
// no-op ceiling the relay is compared with. Loopback only.
//
//	relay-load noop -listen 127.0.0.1:0 -addr-file F     a server answering 202 after reading the body
//	relay-load send -url U -rate 2000 -duration 10s      open loop: a steady offered rate
//	relay-load send -url U -concurrency 64 -duration 10s closed loop: saturation
//	relay-load pipelines -url U -count 200               each pipeline's created, pending, running, success
//	relay-load flood -url U -strangers 200 -stranger-body 26214400 -duration 10s
//	                                                     strangers' bodies (a wrong token, or with -signing a
//	                                                     forged signature), answered 401 or 503
//	relay-load fill -data DIR -statuses 100000 -rounds 10 a store filled for the status page's timing
//	                                                     (-database URL: PostgreSQL)
//	relay-load gitlab -addr-file F -repos 20             a GitLab stand-in with 20 pull mirrors (bench/repo-N)
//	relay-load pushes -url U -rate 200 -repos 20         signed Bitbucket Cloud pushes to POST /bitbucket
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: relay-load noop|send|pipelines|flood|fill|gitlab|pushes [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	target := fs.String("url", "", "the webhook URL, or several separated by commas, used in turn (loopback only)")
	token := fs.String("token", os.Getenv("BENCH_WEBHOOK_TOKEN"), "X-Gitlab-Token")
	template := fs.String("payload", "src/internal/gitlab/testdata/pipeline-iso-format.json", "the payload the requests are made from")
	rate := fs.Int("rate", 0, "requests per second, open loop")
	concurrency := fs.Int("concurrency", 0, "clients, closed loop")
	duration := fs.Duration("duration", 10*time.Second, "how long to send (bounded: at most 2m)")
	requests := fs.Int("requests", 0, "closed loop: stop after this many requests (0: after -duration)")
	count := fs.Int("count", 100, "pipelines")
	statuses := fs.Int("statuses", 10000, "distinct commits the requests are spread over")
	start := fs.Int64("start", 1, "first pipeline id")
	listen := fs.String("listen", "127.0.0.1:0", "noop: address")
	strangers := fs.Int("strangers", 200, "flood: clients sending bodies the relay must refuse")
	strangerBody := fs.Int64("stranger-body", 25<<20, "flood: bytes of each stranger's body")
	signing := fs.String("signing", "", "the relay's signing token (whsec_...): webhooks are signed (flood: strangers forge signatures) instead of carrying -token")
	addrFile := fs.String("addr-file", "", "noop: write the address here")
	data := fs.String("data", "", "fill: the embedded store's directory")
	database := fs.String("database", "", "fill: a PostgreSQL store's URL instead")
	rounds := fs.Int("rounds", 10, "fill: events per status (each a history entry)")
	repos := fs.Int("repos", 20, "gitlab, pushes: repositories (bench/repo-N)")
	pushSecret := fs.String("push-secret", os.Getenv("BENCH_PUSH_SECRET"), "pushes: the relay's BITBUCKET_RELAY_PUSH_SECRET")
	pushPayload := fs.String("push-payload", "src/internal/pushhook/testdata/cloud-repo-push.json", "pushes: the repo:push the requests are made from")
	gitlabToken := fs.String("gitlab-token", os.Getenv("BENCH_GITLAB_TOKEN"), "gitlab: the PRIVATE-TOKEN it takes")
	interval := fs.Duration("interval", 5*time.Minute, "gitlab: the pull mirroring interval")
	_ = fs.Parse(os.Args[2:])
	if *duration > 2*time.Minute {
		*duration = 2 * time.Minute
	}
	switch os.Args[1] {
	case "noop":
		noop(*listen, *addrFile)
		return
	case "fill":
		fill(*data, *database, *statuses, *rounds)
		return
	case "gitlab":
		serveGitLab(*listen, *addrFile, *gitlabToken, *repos, *interval)
		return
	}
	urls := strings.Split(*target, ",")
	for _, t := range urls {
		if u, err := url.Parse(t); err != nil || !isLoopback(u.Hostname()) {
			log.Fatalf("-url %q: only a loopback address is a target", t)
		}
	}
	g := newGenerator(*template, *start, *statuses)
	c := &client{urls: urls, token: *token, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 30 * time.Second}}
	if *signing != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*signing, "whsec_"))
		if err != nil {
			log.Fatal("-signing: not a whsec_ token")
		}
		c.key, c.token = key, ""
	}
	switch os.Args[1] {
	case "send":
		var r result
		if *rate > 0 {
			r = c.openLoop(g, *rate, *duration)
		} else {
			r = c.closedLoop(g, max(*concurrency, 1), *duration, int64(*requests))
		}
		out, _ := json.Marshal(r)
		fmt.Println(string(out))
	case "pipelines":
		c.pipelines(g, *count)
	case "pushes":
		out, _ := json.Marshal(c.pushes(newPushGenerator(*pushPayload, *repos), *pushSecret, max(*rate, 1), *duration))
		fmt.Println(string(out))
	case "flood":
		out, _ := json.Marshal(c.flood(c.key, *strangers, *strangerBody, *duration))
		fmt.Println(string(out))
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func noop(listen, addrFile string) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatal(err)
	}
	if addrFile != "" {
		_ = os.WriteFile(addrFile, []byte(ln.Addr().String()), 0o644)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 25<<20))
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "accepted\n")
	})}
	log.Fatal(srv.Serve(ln))
}

// generator makes Pipeline Hook bodies from GitLab's own shape, each a new
// pipeline on one of `statuses` commits.
type generator struct {
	doc      map[string]any
	next     atomic.Int64
	statuses int
	mu       sync.Mutex
}

func newGenerator(file string, start int64, statuses int) *generator {
	data, err := os.ReadFile(file)
	if err != nil {
		log.Fatal(err)
	}
	g := &generator{statuses: statuses}
	if err := json.Unmarshal(data, &g.doc); err != nil {
		log.Fatal(err)
	}
	g.next.Store(start)
	return g
}

func (g *generator) body(id int64, status string) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.doc["object_attributes"].(map[string]any)
	sha := fmt.Sprintf("%040x", id%int64(g.statuses)+1)
	a["id"], a["iid"], a["status"], a["sha"] = id, id, status, sha
	a["url"] = fmt.Sprintf("https://gitlab.example.com/acme/widgets/-/pipelines/%d", id)
	if status == "success" {
		a["finished_at"] = time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	} else {
		a["finished_at"] = nil
	}
	g.doc["commit"].(map[string]any)["id"] = sha
	out, _ := json.Marshal(g.doc)
	return out
}

// client spreads requests over urls in turn, as a load balancer would.
type client struct {
	urls  []string
	next  atomic.Int64
	token string
	// key signs each webhook (a signing token) instead of the token.
	key  []byte
	http *http.Client
}

// send sends a Pipeline Hook with the token, or signed.
func (c *client) send(body []byte) (int, time.Duration) {
	target := c.urls[int(c.next.Add(1))%len(c.urls)]
	req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
	if c.key != nil {
		id, ts := fmt.Sprintf("msg_%d", c.next.Add(1)), time.Now().Unix()
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", fmt.Sprint(ts))
		req.Header.Set("webhook-signature", sign(c.key, id, ts, body))
	} else {
		req.Header.Set("X-Gitlab-Token", c.token)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, time.Since(start)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

type result struct {
	Mode        string         `json:"mode"`
	Offered     float64        `json:"offered_per_s,omitempty"`
	Sent        int            `json:"sent"`
	Codes       map[string]int `json:"codes"`
	AcceptedPS  float64        `json:"accepted_per_s"`
	P50ms       float64        `json:"p50_ms"`
	P99ms       float64        `json:"p99_ms"`
	MaxMs       float64        `json:"max_ms"`
	DurationSec float64        `json:"seconds"`
}

type recorder struct {
	mu    sync.Mutex
	lat   []time.Duration
	codes map[string]int
}

func (r *recorder) add(code int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, d)
	r.codes[fmt.Sprint(code)]++
}

func (r *recorder) result(mode string, elapsed time.Duration) result {
	slices.Sort(r.lat)
	q := func(p float64) float64 {
		if len(r.lat) == 0 {
			return 0
		}
		return float64(r.lat[min(int(float64(len(r.lat))*p), len(r.lat)-1)].Microseconds()) / 1000
	}
	return result{Mode: mode, Sent: len(r.lat), Codes: r.codes, AcceptedPS: float64(r.codes["202"]) / elapsed.Seconds(),
		P50ms: q(0.50), P99ms: q(0.99), MaxMs: q(1), DurationSec: elapsed.Seconds()}
}

// openLoop sends at a fixed rate whatever the answers' speed, as GitLab
// does: a slow answer does not slow the next request.
func (c *client) openLoop(g *generator, rate int, d time.Duration) result {
	return steady("steady", rate, d, func() func() (int, time.Duration) {
		body := g.body(g.next.Add(1), "running")
		return func() (int, time.Duration) { return c.send(body) }
	})
}

// steady calls next at a fixed rate for d, and sends what each call makes
// at once, in its own goroutine: a slow answer does not slow the next.
func steady(mode string, rate int, d time.Duration, next func() func() (int, time.Duration)) result {
	rec := &recorder{codes: map[string]int{}}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		send := next()
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec.add(send())
		}()
	}
	wg.Wait()
	r := rec.result(mode, d)
	r.Offered = float64(rate)
	return r
}

// closedLoop keeps n requests in flight: the most the server can take.
func (c *client) closedLoop(g *generator, n int, d time.Duration, limit int64) result {
	rec := &recorder{codes: map[string]int{}}
	start := time.Now()
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d && (limit == 0 || sent.Add(1) <= limit) {
				rec.add(c.send(g.body(g.next.Add(1), "running")))
			}
		}()
	}
	wg.Wait()
	return rec.result("saturation", time.Since(start))
}

// pipelines sends each pipeline's life as GitLab does, events a few
// milliseconds apart, 16 pipelines at a time.
func (c *client) pipelines(g *generator, n int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for range n {
		id := g.next.Add(1)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, st := range []string{"created", "pending", "running", "success"} {
				if code, _ := c.send(g.body(id, st)); code != http.StatusAccepted {
					log.Printf("pipeline %d %s: %d", id, st, code)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

// zeros is a body of n bytes that costs the sender no memory.
type zeros struct{ left int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.left))
	clear(p[:n])
	z.left -= int64(n)
	return n, nil
}

// sign is a Standard Webhooks signature, as GitLab's signing token makes.
func sign(key []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, ts)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// flood keeps n strangers sending size-byte bodies the relay must refuse
// for d: a wrong token, or, with a signing key, a forged signature with
// fresh headers, which can only be refused once the body is read. It
// reports the answers they got. Genuine webhooks are measured meanwhile by
// another process (send), so the strangers' load does not slow their clock.
func (c *client) flood(key []byte, n int, size int64, d time.Duration) map[string]int {
	stop := time.Now().Add(d)
	var mu sync.Mutex
	answers := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
			for time.Now().Before(stop) {
				req, _ := http.NewRequest(http.MethodPost, c.urls[i%len(c.urls)], &zeros{left: size})
				req.ContentLength = size
				req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
				if key == nil {
					req.Header.Set("X-Gitlab-Token", "not-the-token")
				} else {
					req.Header.Set("webhook-id", fmt.Sprintf("msg_stranger_%d", i))
					req.Header.Set("webhook-timestamp", fmt.Sprint(time.Now().Unix()))
					req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
				}
				outcome := "error"
				if resp, err := hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					outcome = fmt.Sprint(resp.StatusCode)
				}
				mu.Lock()
				answers[outcome]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return answers
}
