package poll

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

// The tests start Debian's snmpd on a loopback port. snmpd serves the
// AC-KPI subtree and sysUpTime through pass_persist, whose helper is
// this test binary re-executed with passPersistEnv naming a values file
// ("OID TYPE VALUE" a line) that the test rewrites between polls.
const passPersistEnv = "SBCWATCH_TEST_PASS_PERSIST"

func TestMain(m *testing.M) {
	if f := os.Getenv(passPersistEnv); f != "" {
		passPersist(f)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// passPersist speaks net-snmp's pass_persist protocol on stdin/stdout.
func passPersist(file string) {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	line := func() (string, bool) {
		if !in.Scan() {
			return "", false
		}
		return strings.TrimSpace(in.Text()), true
	}
	for {
		cmd, ok := line()
		if !ok {
			return
		}
		switch cmd {
		case "PING":
			fmt.Fprintln(out, "PONG")
		case "get", "getnext":
			oid, ok := line()
			if !ok {
				return
			}
			vals := loadValues(file)
			var hit *ppValue
			for i := range vals {
				c := cmpOID(vals[i].oid, oid)
				if (cmd == "get" && c == 0) || (cmd == "getnext" && c > 0) {
					hit = &vals[i]
					break
				}
			}
			if hit == nil {
				fmt.Fprintln(out, "NONE")
			} else {
				fmt.Fprintf(out, "%s\n%s\n%s\n", hit.oid, hit.typ, hit.val)
			}
		case "set":
			line()
			line()
			fmt.Fprintln(out, "not-writable")
		default:
			fmt.Fprintln(out, "NONE")
		}
		out.Flush()
	}
}

type ppValue struct{ oid, typ, val string }

func loadValues(file string) []ppValue {
	b, _ := os.ReadFile(file)
	var vals []ppValue
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		vals = append(vals, ppValue{"." + strings.TrimPrefix(f[0], "."), f[1], f[2]})
	}
	slices.SortFunc(vals, func(a, b ppValue) int { return cmpOID(a.oid, b.oid) })
	return vals
}

func cmpOID(a, b string) int {
	as := strings.Split(strings.Trim(a, "."), ".")
	bs := strings.Split(strings.Trim(b, "."), ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, _ := strconv.ParseUint(as[i], 10, 64)
		y, _ := strconv.ParseUint(bs[i], 10, 64)
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return len(as) - len(bs)
}

// agent is a running snmpd.
type agent struct {
	addr   string // udp://127.0.0.1:port
	values string
}

const (
	testCommunity = "sbcw-ro"
	testV3User    = "sbcwsha"
	testV3User256 = "sbcwsha256"
	testAuthPass  = "auth-pass-123"
	testPrivPass  = "priv-pass-456"
)

// startSNMPD starts snmpd or skips (fails under CI=true) when it is not
// installed.
func startSNMPD(t *testing.T) *agent {
	t.Helper()
	bin, err := exec.LookPath("snmpd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/snmpd", "/usr/local/sbin/snmpd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("snmpd is required under CI=true (apt-get install snmpd): %v", err)
		}
		t.Skipf("SKIP: snmpd not installed (Debian package snmpd); set CI=true to make this a failure")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := &agent{values: filepath.Join(dir, "values")}
	a.set(t, nil)

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	a.addr = fmt.Sprintf("udp://127.0.0.1:%d", port)

	conf := filepath.Join(dir, "snmpd.conf")
	confText := fmt.Sprintf(`agentAddress udp:127.0.0.1:%d
rocommunity %s 127.0.0.1
createUser %s SHA "%s" AES "%s"
createUser %s SHA-256 "%s" AES "%s"
rouser %s authpriv
rouser %s authpriv
pass_persist .1.3.6.1.4.1.5003.15 %s
pass_persist .1.3.6.1.2.1.1.3 %s
`, port, testCommunity, testV3User, testAuthPass, testPrivPass, testV3User256, testAuthPass, testPrivPass,
		testV3User, testV3User256, self, self)
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	persist := filepath.Join(dir, "persist")
	if err := os.Mkdir(persist, 0o700); err != nil {
		t.Fatal(err)
	}
	// -I -system_mib lets the helper serve sysUpTime, so the test can
	// make it go down.
	cmd := exec.Command(bin, "-f", "-Lo", "-C", "-I", "-system_mib", "-c", conf)
	cmd.Env = append(os.Environ(), passPersistEnv+"="+a.values, "SNMP_PERSISTENT_DIR="+persist, "MIBS=")
	logf, err := os.Create(filepath.Join(dir, "snmpd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start snmpd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("snmpd log:\n%s", b)
		}
	})
	// Wait until it answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(port), Community: testCommunity,
			Version: gosnmp.Version2c, Timeout: 200 * time.Millisecond, Context: context.Background()}
		if err := g.Connect(); err == nil {
			_, gerr := g.Get([]string{OIDSysUpTime})
			g.Conn.Close()
			if gerr == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("snmpd on %s did not answer within 10s", a.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return a
}

// val is one served object.
type val struct{ typ, v string }

// set replaces the served values (atomically, by rename).
func (a *agent) set(t *testing.T, vals map[string]val) {
	t.Helper()
	var b strings.Builder
	for oid, v := range vals {
		fmt.Fprintf(&b, "%s %s %s\n", oid, v.typ, v.v)
	}
	tmp := a.values + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, a.values); err != nil {
		t.Fatal(err)
	}
}

func g(col int) string       { return fmt.Sprintf("%s.%d.0", OIDGlobalBase, col) }
func ipg(col, id int) string { return fmt.Sprintf("%s.%d.%d", OIDIPGroupEntry, col, id) }
func c64(v uint64) val       { return val{"counter64", strconv.FormatUint(v, 10)} }
func gauge(v int) val        { return val{"gauge", strconv.Itoa(v)} }
func integer(v int) val      { return val{"integer", strconv.Itoa(v)} }
func ticks(v uint32) val     { return val{"timeticks", strconv.FormatUint(uint64(v), 10)} }
