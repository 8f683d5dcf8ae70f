package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"
)

// The main job: an agent enrolled with a token and CA pin sends its host's
// inventory; the server holds exactly what the agent's own snapshot says.
func TestEnrollStreamAndInventory(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	agent := a.run(t)
	waitInSync(t, s, a, 20*time.Second)

	items := s.serverItems(a.hostID)
	for _, k := range []string{"package/dpkg:libc6:amd64", "user/alice", "group/sudo", "service/ssh.service", "file/etc/app/main.conf", "os/host"} {
		if _, ok := items[strings.Replace(k, "file/etc", "file//etc", 1)]; !ok {
			if _, ok := items[k]; !ok {
				t.Errorf("server inventory lacks %s", k)
			}
		}
	}
	h := s.host(a.hostID)
	if h["connected"] != true {
		t.Errorf("host not shown connected: %v", h)
	}
	if labels, _ := h["labels"].(map[string]any); labels["env"] != "e2e" {
		t.Errorf("token labels not on the host: %v", h["labels"])
	}

	// A change on the host arrives as a delta.
	root.addPackage("curl", "7.88.1-10+deb12u5", "amd64", "")
	root.write("etc/app/main.conf", "listen = 8080\n")
	waitInSync(t, s, a, 10*time.Second)
	if !strings.Contains(agent.output(), "full=false") {
		t.Errorf("the change was not sent as a delta:\n%s", agent.output())
	}
}

// Server down while the host changes, then back up: the server ends up with
// exactly the agent's state, from the spool.
func TestServerOutageSpoolsChanges(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	agent := a.run(t)
	waitInSync(t, s, a, 20*time.Second)

	s.proc.stop()
	root.addUser("mallory", 0)
	root.addPackage("netcat-traditional", "1.10-47", "amd64", "")
	root.write("etc/app/main.conf", "listen = 9090\n")
	// Let the agent notice and spool the change while nobody listens.
	waitFor(t, 20*time.Second, "agent to spool the change", func() bool {
		return strings.Count(agent.output(), "inventory spooled") >= 2
	})
	root.write("etc/app/extra.conf", "x = 1\n")
	time.Sleep(1500 * time.Millisecond)

	s.start()
	waitInSync(t, s, a, 30*time.Second)
	if _, ok := s.serverItems(a.hostID)["user/mallory"]; !ok {
		t.Fatal("the user added during the outage is missing")
	}
}

// Killing the agent with SIGKILL while it writes its spool loses nothing:
// the spool opens again and the server converges on the agent's state.
func TestAgentKilledMidWrite(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	for i := 0; i < 5; i++ {
		agent := a.run(t)
		// Change the host continuously so the agent is writing when killed.
		stop := make(chan struct{})
		go func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				root.write("etc/app/main.conf", strings.Repeat("x", j%1000)+"\n")
				time.Sleep(7 * time.Millisecond)
			}
		}()
		time.Sleep(time.Duration(700+i*300) * time.Millisecond)
		agent.kill()
		close(stop)
		if strings.Contains(agent.output(), "open spool") {
			t.Fatalf("spool failed to open after a kill:\n%s", agent.output())
		}
	}
	agent := a.run(t)
	waitInSync(t, s, a, 30*time.Second)
	if strings.Contains(agent.output(), "quarantin") {
		t.Errorf("spool quarantined entries after SIGKILL:\n%s", agent.output())
	}
}

// Revoking a host closes its live stream at once and refuses reconnects.
func TestRevokeClosesStream(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	agent := a.run(t)
	waitInSync(t, s, a, 20*time.Second)
	run(t, "qinfractl", "--server", "https://"+s.api, "--token", s.token, "--ca-file", s.dir+"/ca.crt", "host", "revoke", a.hostID)
	waitFor(t, 5*time.Second, "stream closed", func() bool { return s.host(a.hostID)["connected"] == false })
	waitFor(t, 10*time.Second, "agent refused", func() bool {
		return strings.Count(agent.output(), "revoked") >= 2
	})
	if s.host(a.hostID)["connected"] != false {
		t.Fatal("revoked host reconnected")
	}
}

// Certificates renew over the live stream before they expire: with a
// 20-second lifetime, an agent that has outlived its first certificate
// still reconnects after the server restarts.
func TestCertificateRenewal(t *testing.T) {
	s := newServer(t, "--cert-ttl", "20s")
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	firstPEM, err := os.ReadFile(a.dir + "/agent.crt")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(firstPEM)
	first, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	agent := a.run(t)
	waitFor(t, 60*time.Second, "the first certificate to expire", func() bool { return time.Now().After(first.NotAfter.Add(time.Second)) })
	if n := strings.Count(agent.output(), "certificate renewed"); n < 1 {
		t.Fatalf("no renewal before expiry:\n%s", agent.output())
	}
	s.proc.stop()
	s.start()
	root.addUser("bob", 1001)
	waitInSync(t, s, a, 30*time.Second)
}
