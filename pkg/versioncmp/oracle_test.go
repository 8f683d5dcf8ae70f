package versioncmp

// The oracle tests compare this package with the package managers
// themselves: dpkg --compare-versions and dpkg --validate-version for
// Debian versions, rpm's Lua rpm.vercmp() for rpm versions. Any
// disagreement fails the test. They need the dpkg and rpm binaries
// (.ci/run installs rpm on a fresh Debian machine) and take some seconds,
// so -short skips them.

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// minOraclePairs is the fewest version pairs each oracle test must check.
const minOraclePairs = 10000

// dpkgEdge are hand-picked Debian versions: epochs, tildes, pluses,
// binNMUs, security uploads, leading zeros, long numbers, letters, and
// strings dpkg warns about or refuses.
var dpkgEdge = []string{
	"", "0", "00", "0:0", "1.0", "1.0-1", "1.0-0", "1.0~rc1", "1.0~rc1-1",
	"1.0~~", "1.0~", "1.0~~a", "1.0+", "1.0+b1", "1.0-1+b1", "1.0-1~bpo1",
	"1.0.0", "1:0.9", "1:1.0", "0:1.0", "2:1.0-1+deb12u1", "1.0~rc1+b2",
	"1.0-1+deb12u1", "1.0-1+deb12u10", "1.0-1+deb12u2", "1.0-1~deb12u1",
	"1.0a", "1.0A", "1.0-a", "1.0.a", "1.01", "1.001", "1.0.", "1.0-1.",
	"1.0+dfsg", "1.0+dfsg-1", "1.0~dfsg", "10", "9", "1:", ":1", "a1", "1-",
	"-1", "1_0", "1 0", " 1.0", "1.0 ", "1.0-1-1", "1.0-1-", "1:2:3",
	"1:2-3:4", "4294967296:1", "2147483647:1", "2147483648:1",
	"99999999999999999999999:1", "1.99999999999999999999",
	"1.99999999999999999998", "+1:1", "-0:1", "1:1.0-", "1.0~a", "1.0~A",
	"1.0~0", "1.0-~", "1.0-+", "3.0.19-1~deb12u2", "3.0.11-1~deb12u2",
	"2.36-9+deb12u14", "2.36-9+deb12u3", "1:2.66-4+deb12u2+b2",
	"1:2.66-4+deb12u2", "5.2.15-2+b8", "5.2.15-2", "1.0-1ubuntu0.1",
	"1.0-1ubuntu0.1+esm1", "1.0-1build1", "0.0", "0-0", "0.", "1.0-.",
}

// rpmEdge are hand-picked rpm versions: rpm's own test-suite strings for
// rpmvercmp, epochs, tilde and caret, module releases, separators, and
// strings rpm refuses.
var rpmEdge = []string{
	"", "0", "1.0", "1.0-1", "1:1.0-1", "0:1.0-1", "00:1.0-1", ":1.0",
	"1.0^", "1.0^git1", "1.0^git2", "1.0~rc1", "1.0~rc2", "1.0~rc1^git1",
	"1.0^git1~pre", "1.0-", "1.0--1", "1.0-1-2", "1.0_1", "1.0.1", "1.01",
	"1.001", "a", "A", "1a", "1.a", "1.0a", "1.0aa", "5.5p1", "5.5p2",
	"5.5p10", "5.6p1", "6.5p1", "10xyz", "10.1xyz", "xyz10", "xyz10.1",
	"xyz.4", "8", "2", "6.0.rc1", "6.0", "10b2", "10a1", "10a2", "10.0001",
	"10.1", "10.0039", "4.999.9", "5.0", "20101121", "20101122", "2_0",
	"2.0", "a+", "a_", "+a", "_a", "+_", "_+", "+", "_",
	"1.0~rc1~git123", "1.0^20160101", "1.0^20160102", "1.0^20160101^git1",
	"1:3.0.1-41.el9_0", "1:3.0.7-24.el9", "3.0.7-24.el9", "2.34-100.el9_4.2",
	"2.34-100.el9_4.10", "12:4.4.2-17.b1.el9",
	"1:0.9.0~M3-7.module_el9.6.0+148+fb6dc857",
	"1.2.3-4.module+el8.1.0+4534+1a2b3c", "a:1", "1:a:1",
	"99999999999999999999", "99999999999999999998", "~", "^", "~~", "^^",
	"1~", "1^", "-1", "1:", "1.0 ", " 1.0", "%{x}", "1.0-1.el9~bootstrap",
	"1.0-1.el9^post",
}

// versionCorpus returns the real versions in testdata/file, plus extra.
func versionCorpus(t *testing.T, file string, extra ...string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			add(line)
		}
	}
	for _, v := range extra {
		if v != "" {
			add(v)
		}
	}
	return out
}

// liveDpkgVersions returns the versions installed on this machine, which
// may be newer than the snapshot in testdata.
func liveDpkgVersions() []string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}\n${source:Version}\n").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// mutator makes random variations of real versions: the cases most likely
// to expose a difference are versions that differ from each other a little.
type mutator struct {
	r        *rand.Rand
	alphabet string
	suffixes []string
}

func (m *mutator) mutate(v string) string {
	for n := 1 + m.r.IntN(3); n > 0; n-- {
		v = m.once(v)
	}
	return v
}

func (m *mutator) pos(v string) int { return m.r.IntN(len(v) + 1) }

func (m *mutator) char() string {
	i := m.r.IntN(len(m.alphabet))
	return m.alphabet[i : i+1]
}

func (m *mutator) once(v string) string {
	switch m.r.IntN(9) {
	case 0: // insert a character
		p := m.pos(v)
		return v[:p] + m.char() + v[p:]
	case 1: // delete a character
		if v == "" {
			return v
		}
		p := m.r.IntN(len(v))
		return v[:p] + v[p+1:]
	case 2: // replace a character
		if v == "" {
			return m.char()
		}
		p := m.r.IntN(len(v))
		return v[:p] + m.char() + v[p+1:]
	case 3, 4: // change a number
		var runs [][2]int
		for i := 0; i < len(v); {
			if !isDigit(v[i]) {
				i++
				continue
			}
			j := i
			for j < len(v) && isDigit(v[j]) {
				j++
			}
			runs = append(runs, [2]int{i, j})
			i = j
		}
		if len(runs) == 0 {
			return v + strconv.Itoa(m.r.IntN(20))
		}
		run := runs[m.r.IntN(len(runs))]
		num := v[run[0]:run[1]]
		switch m.r.IntN(6) {
		case 0, 1:
			if n, err := strconv.ParseUint(num, 10, 63); err == nil {
				num = strconv.FormatUint(n+1, 10)
			}
		case 2:
			if n, err := strconv.ParseUint(num, 10, 63); err == nil && n > 0 {
				num = strconv.FormatUint(n-1, 10)
			}
		case 3:
			num = "0" + num
		case 4:
			num = strings.Repeat("9", 18+m.r.IntN(6))
		case 5:
			num = "0"
		}
		return v[:run[0]] + num + v[run[1]:]
	case 5: // append a suffix
		return v + m.suffixes[m.r.IntN(len(m.suffixes))]
	case 6: // insert a suffix
		p := m.pos(v)
		return v[:p] + m.suffixes[m.r.IntN(len(m.suffixes))] + v[p:]
	case 7: // add or change an epoch
		if i := strings.IndexByte(v, ':'); i >= 0 && m.r.IntN(2) == 0 {
			return strconv.Itoa(m.r.IntN(4)) + v[i:]
		}
		return []string{"0", "1", "2", "00", "10"}[m.r.IntN(5)] + ":" + v
	default: // truncate
		return v[:m.pos(v)]
	}
}

// oraclePairs builds at least n distinct pairs from real versions, edge
// cases and mutations of both.
func oraclePairs(seed uint64, real, edge []string, m *mutator, n int) [][2]string {
	m.r = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	r := m.r
	seen := map[[2]string]bool{}
	var pairs [][2]string
	add := func(a, b string) {
		p := [2]string{a, b}
		if !seen[p] {
			seen[p] = true
			pairs = append(pairs, p)
		}
	}
	for i, a := range edge {
		for _, b := range edge[i:] {
			add(a, b)
		}
	}
	pick := func() string { return real[r.IntN(len(real))] }
	for len(pairs) < n {
		switch r.IntN(5) {
		case 0: // two real versions
			add(pick(), pick())
		case 1: // a real version against a variation of itself
			v := pick()
			add(v, m.mutate(v))
		case 2: // two variations of one real version
			v := pick()
			add(m.mutate(v), m.mutate(v))
		case 3: // an edge case against a real version or a variation
			e := edge[r.IntN(len(edge))]
			if r.IntN(2) == 0 {
				add(e, pick())
			} else {
				add(m.mutate(e), m.mutate(pick()))
			}
		default: // variations of two real versions
			add(m.mutate(pick()), m.mutate(pick()))
		}
	}
	return pairs
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// runShell runs each line of script as a command in sh, split over two
// shells, and returns one output line per script line.
func runShell(t *testing.T, lines []string) []string {
	t.Helper()
	const workers = 2
	results := make([][]string, workers)
	errs := make([]error, workers)
	chunk := (len(lines) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := min(w*chunk, len(lines)), min((w+1)*chunk, len(lines))
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("sh", "-s")
			cmd.Stdin = strings.NewReader(strings.Join(lines[lo:hi], "\n") + "\n")
			out, err := cmd.Output()
			if err != nil {
				errs[w] = err
				return
			}
			results[w] = strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if hi == lo {
				results[w] = nil
			}
			if len(results[w]) != hi-lo {
				errs[w] = fmt.Errorf("sh printed %d lines for %d commands", len(results[w]), hi-lo)
			}
		}()
	}
	wg.Wait()
	var all []string
	for w := range workers {
		if errs[w] != nil {
			t.Fatal(errs[w])
		}
		all = append(all, results[w]...)
	}
	return all
}

var relation = map[int]string{-1: "lt", 0: "eq", 1: "gt"}

// dpkgRelation asks dpkg which of lt, eq, gt holds (for failure reports).
func dpkgRelation(a, b string) string {
	for _, op := range []string{"lt", "eq", "gt"} {
		err := exec.Command("dpkg", "--compare-versions", "--", a, op, b).Run()
		if err == nil {
			return op
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			return "error"
		}
	}
	return "none"
}

func TestDpkgOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("oracle test: runs dpkg thousands of times")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed")
	}
	real := versionCorpus(t, "dpkg-versions.txt", liveDpkgVersions()...)
	m := &mutator{
		alphabet: "0123456789abcfxyzAZ.+-~:_ ",
		suffixes: []string{"~rc1", "~", "~~", "+b1", "+b12", "+deb12u1", "~deb12u1", ".1", "-1", "a", "+", "-0ubuntu1.1", ".0", "0", "+esm1", "+really1.0", "~bpo12+1", ":1", "-"},
	}
	pairs := oraclePairs(1, real, dpkgEdge, m, minOraclePairs+4000)

	var script []string
	for _, p := range pairs {
		op := relation[Dpkg.Compare(p[0], p[1])]
		script = append(script, fmt.Sprintf("dpkg --compare-versions -- %s %s %s 2>/dev/null; echo $?", shellQuote(p[0]), op, shellQuote(p[1])))
	}
	out := runShell(t, script)
	var agreed, refused, bad int
	for i, p := range pairs {
		switch out[i] {
		case "0":
			agreed++
		case "1":
			bad++
			if bad <= 20 {
				t.Errorf("Compare(%q, %q) = %s, dpkg says %s", p[0], p[1], relation[Dpkg.Compare(p[0], p[1])], dpkgRelation(p[0], p[1]))
			}
		default:
			// dpkg refuses to parse one of the two: Valid must refuse too.
			refused++
			if Dpkg.Valid(p[0]) == nil && Dpkg.Valid(p[1]) == nil {
				bad++
				t.Errorf("dpkg refuses the pair (%q, %q) (exit %s), Valid accepts both", p[0], p[1], out[i])
			}
		}
	}
	t.Logf("dpkg oracle: %d pairs, %d agreed, %d refused by dpkg (and by Valid), %d disagreements", len(pairs), agreed, refused, bad)
	if agreed < minOraclePairs {
		t.Fatalf("only %d pairs compared by dpkg, want %d", agreed, minOraclePairs)
	}

	// Valid against dpkg --validate-version: 0 valid, 1 warning, 2 error.
	seen := map[string]bool{}
	var versions []string
	for _, p := range pairs {
		for _, v := range p {
			if !seen[v] && len(versions) < 3000 {
				seen[v] = true
				versions = append(versions, v)
			}
		}
	}
	script = script[:0]
	for _, v := range versions {
		script = append(script, fmt.Sprintf("dpkg --validate-version -- %s >/dev/null 2>&1; echo $?", shellQuote(v)))
	}
	out = runShell(t, script)
	bad = 0
	for i, v := range versions {
		want := "0"
		if _, err := parseDpkg(v); err != nil {
			want = "2"
			if err.warn {
				want = "1"
			}
		}
		if out[i] != want {
			bad++
			if bad <= 20 {
				t.Errorf("dpkg --validate-version %q exits %s, parseDpkg says %s", v, out[i], want)
			}
		}
	}
	t.Logf("dpkg --validate-version: %d versions, %d disagreements", len(versions), bad)
}

func TestRPMOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("oracle test: runs rpm")
	}
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm is not installed (apt-get install rpm)")
	}
	real := versionCorpus(t, "rpm-versions.txt", liveDpkgVersions()...)
	m := &mutator{
		alphabet: "0123456789abcpxyzAZ.+-~^:_% ",
		suffixes: []string{"~rc1", "~", "^", "^git1", "^post1", "~~", ".el9", ".el9_4", "_1", ".1", "-1", "a", "+", ".0", "0", ".module+el9.2.0+1", ":1", "-", "p1"},
	}
	pairs := oraclePairs(2, real, rpmEdge, m, 3*minOraclePairs)

	dir := t.TempDir()
	in, outPath := filepath.Join(dir, "pairs"), filepath.Join(dir, "out")
	var buf bytes.Buffer
	for _, p := range pairs {
		buf.WriteString(p[0] + "\t" + p[1] + "\n")
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	const lua = `%{lua:
local out = io.open(os.getenv("QINFRA_OUT"), "w")
for line in io.lines(os.getenv("QINFRA_PAIRS")) do
  local a, b = line:match("^([^\t]*)\t(.*)$")
  local ok, r = pcall(rpm.vercmp, a, b)
  if ok then out:write(tostring(r), "\n") else out:write("E\n") end
end
out:close()
}`
	cmd := exec.Command("rpm", "--eval", lua)
	cmd.Env = append(os.Environ(), "QINFRA_PAIRS="+in, "QINFRA_OUT="+outPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rpm --eval: %v\n%s", err, out)
	}
	f, err := os.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var agreed, refused, bad, i int
	for ; sc.Scan(); i++ {
		if i >= len(pairs) {
			t.Fatal("rpm printed more answers than pairs")
		}
		p, got := pairs[i], sc.Text()
		if got == "E" {
			refused++
			if RPM.Valid(p[0]) == nil && RPM.Valid(p[1]) == nil {
				bad++
				t.Errorf("rpm refuses the pair (%q, %q), Valid accepts both", p[0], p[1])
			}
			continue
		}
		if want := strconv.Itoa(RPM.Compare(p[0], p[1])); got != want {
			bad++
			if bad <= 20 {
				t.Errorf("Compare(%q, %q) = %s, rpm.vercmp says %s", p[0], p[1], want, got)
			}
			continue
		}
		agreed++
	}
	if i != len(pairs) {
		t.Fatalf("rpm answered %d of %d pairs", i, len(pairs))
	}
	t.Logf("rpm oracle: %d pairs, %d agreed, %d refused by rpm (and by Valid), %d disagreements", len(pairs), agreed, refused, bad)
	if agreed < minOraclePairs {
		t.Fatalf("only %d pairs compared by rpm, want %d", agreed, minOraclePairs)
	}
}
