package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An online backup through the API, restored into a new data directory,
// brings back every host and inventory.
func TestOnlineBackupAndRestore(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	a.run(t)
	waitInSync(t, s, a, 20*time.Second)
	want := s.serverItems(a.hostID)

	req, _ := http.NewRequest("POST", "https://"+s.api+"/api/v1/admin/backup", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("backup: %d %s", resp.StatusCode, b)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// A second server: same CA (copied, as an operator restoring a data
	// directory would), store from the backup.
	dir := t.TempDir()
	for _, name := range []string{"ca.crt", "ca.key", "server.crt", "server.key"} {
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "qinfra-server", "restore", "--data", dir, "--in", backup)
	s2 := &server{t: t, dir: dir, grpc: freePort(t), api: freePort(t), token: s.token, fp: s.fp, httpClient: s.httpClient}
	s2.start()
	if got := s2.serverItems(a.hostID); diffMaps(want, got) != "" {
		t.Fatalf("restored inventory differs:\n%s", diffMaps(want, got))
	}
}
