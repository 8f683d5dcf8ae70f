package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgDSN returns a DSN for a fresh schema in the local PostgreSQL, dropped
// when the test ends; it skips without PostgreSQL, except under CI.
func pgDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv("QINFRA_TEST_POSTGRES")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no PostgreSQL at %s: %v", base, err)
		}
		t.Skipf("no PostgreSQL at %s: %v", base, err)
	}
	defer conn.Close(context.Background())
	schema := fmt.Sprintf("qinfra_e2e_%d", rand.Int64())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	return base + "&search_path=" + schema
}

// replica is one qinfra-server process of a cluster sharing a database.
type replica struct {
	dir, grpc, api string
	proc           *proc
}

// Three replicas on one database; agents spread over them; one replica is
// killed with SIGKILL while commands are in flight. Its agents move to the
// others within seconds, every host's inventory is intact, and every
// command is answered exactly once.
func TestReplicasSurviveSIGKILL(t *testing.T) {
	s, reps := startReplicas(t, 3)

	// Six agents, each listing all three replicas starting at a different
	// one, so two start on each.
	var agents []*agentState
	var procs []*proc
	for i := 0; i < 6; i++ {
		root := newFakeRoot(t)
		order := []string{reps[i%3].grpc, reps[(i+1)%3].grpc, reps[(i+2)%3].grpc}
		a := enrollAgent(t, s, root.dir, fmt.Sprintf("servers: [%s]\n", strings.Join(order, ", ")))
		agents = append(agents, a)
		procs = append(procs, a.run(t))
	}
	for _, a := range agents {
		waitInSync(t, s, a, 30*time.Second)
	}

	// Commands in flight: queue several per host, kill replica 1 midway.
	var cmdIDs []string
	for round := 0; round < 3; round++ {
		for _, a := range agents {
			var c struct {
				ID string `json:"id"`
			}
			code := s.apiJSON("POST", "/api/v1/hosts/"+a.hostID+"/commands",
				map[string]any{"action": "run_script", "script": map[string]any{"body": "echo " + a.hostID}}, &c)
			if code != 201 {
				t.Fatalf("queue command: %d", code)
			}
			cmdIDs = append(cmdIDs, c.ID)
		}
		if round == 1 {
			reps[1].proc.kill()
		}
	}
	killedAt := time.Now()

	// The agents that were on replica 1 hold a stream on replica 0 or 2
	// within seconds (their own log says where they connected).
	for i, p := range procs {
		if i%3 != 1 {
			continue
		}
		waitFor(t, 20*time.Second, "agent moved to a live replica", func() bool {
			lines := regexp.MustCompile(`msg=connected component=runner server=(\S+)`).FindAllStringSubmatch(p.output(), -1)
			return len(lines) >= 2 && lines[len(lines)-1][1] != reps[1].grpc
		})
	}
	t.Logf("the killed replica's agents reconnected elsewhere %.1fs after the kill", time.Since(killedAt).Seconds())

	// Every command finished exactly once.
	waitFor(t, 30*time.Second, "all commands answered", func() bool {
		for _, id := range cmdIDs {
			var c struct {
				State string `json:"state"`
			}
			if s.apiJSON("GET", "/api/v1/commands/"+id, nil, &c) != 200 || c.State != "refused" {
				return false
			}
		}
		return true
	})
	for i, p := range procs {
		for _, id := range cmdIDs {
			if n := strings.Count(p.output(), "command refused\" component=runner command="+id); n > 1 {
				t.Errorf("agent %d answered command %s %d times", i, id, n)
			}
		}
	}
	// State intact: each host still matches its agent, and changes made
	// after the failover arrive.
	for _, a := range agents {
		waitInSync(t, s, a, 30*time.Second)
	}
}

// startReplicas initializes one data directory on the test database, gives
// n-1 more directories copies of its CA and server certificate, as an
// operator would distribute them, starts a replica on each and waits until
// all are ready. The returned server's API client talks to replica 0.
func startReplicas(t *testing.T, n int) (*server, []*replica) {
	t.Helper()
	dsn := pgDSN(t)
	first := t.TempDir()
	out := run(t, "qinfra-server", "init", "--data", first, "--store", dsn)
	token := regexp.MustCompile(`Admin API token[^:]*: (\S+)`).FindStringSubmatch(out)[1]
	fp := regexp.MustCompile(`CA fingerprint: (\S+)`).FindStringSubmatch(out)[1]
	var reps []*replica
	for i := range n {
		r := &replica{dir: first, grpc: freePort(t), api: freePort(t)}
		if i > 0 {
			r.dir = t.TempDir()
			for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key"} {
				b, err := os.ReadFile(filepath.Join(first, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(r.dir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		r.proc = start(t, "qinfra-server", "serve", "--data", r.dir, "--store", dsn,
			"--grpc-addr", r.grpc, "--api-addr", r.api, "--log-level", "debug")
		reps = append(reps, r)
	}
	s := &server{t: t, dir: first, grpc: reps[0].grpc, api: reps[0].api, token: token, fp: fp}
	s.httpClient = apiClient(t, first)
	for _, r := range reps {
		waitFor(t, 20*time.Second, "replica ready", func() bool {
			resp, err := s.httpClient.Get("https://" + r.api + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
	return s, reps
}
