package analyze

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
)

// capturesDir finds the shared public captures: $SBCWATCH_CAPTURES, or
// ../shared/captures beside the repository. Under CI a missing folder is
// a failure; elsewhere the test skips and says why.
func capturesDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SBCWATCH_CAPTURES")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "captures")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared captures not found at %s (set SBCWATCH_CAPTURES)", dir)
		}
		t.Skipf("shared captures not found at %s; set SBCWATCH_CAPTURES to run this test", dir)
	}
	return dir
}

// allCaptures lists every capture file under dir.
func allCaptures(t testing.TB, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasSuffix(p, ".md") {
			return nil
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// tsharkSIP returns, per Call-ID, the sorted labels (method or status
// code) of every SIP message tshark decodes.
func tsharkSIP(t *testing.T, tshark, file string) map[string][]string {
	t.Helper()
	cmd := exec.Command(tshark, "-r", file, "-Y", "sip", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
		"-e", "sip.Call-ID", "-e", "sip.Method", "-e", "sip.Status-Code")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", file, err)
	}
	res := map[string][]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		for len(f) < 3 {
			f = append(f, "")
		}
		ids := strings.Split(f[0], "|")
		methods := nonEmpty(strings.Split(f[1], "|"))
		codes := nonEmpty(strings.Split(f[2], "|"))
		// One frame may carry several messages; tshark lists each field's
		// occurrences in order but not how requests and responses
		// interleave, so a frame must hold only requests or only responses.
		switch {
		case len(methods) == len(ids) && len(codes) == 0:
			for i, id := range ids {
				res[id] = append(res[id], methods[i])
			}
		case len(codes) == len(ids) && len(methods) == 0:
			for i, id := range ids {
				res[id] = append(res[id], codes[i])
			}
		default:
			t.Fatalf("%s: frame mixes requests and responses (%q); the oracle cannot pair them", file, line)
		}
	}
	for k := range res {
		sort.Strings(res[k])
	}
	return res
}

// deliberate names the captures where sbcwatch sees more or other SIP
// than tshark 4.0, and why.
// The SIP counts come from the captures' INDEX.md (checked there with a
// HEP3 chunk parser): hep.pcap carries INVITE/100/407/OPTIONS/200/PUBLISH
// as payload type 1 (and 2 non-SIP packets), hep3_compressed 21 zlib SIP
// payloads.
var deliberate = map[string]struct {
	why     string
	wantSIP uint64
}{
	"hep.pcap":                    {"tshark 4.0 has no HEP dissector; sbcwatch unwraps the SIP inside HEP3", 6},
	"hep3_compressed.pcap.pcapng": {"tshark 4.0 has no HEP dissector; sbcwatch inflates and unwraps the SIP inside HEP3", 21},
}

// TestSIPMatchesTshark: on every public capture, for every Call-ID, the
// number of SIP messages and their methods/status codes equal tshark's.
func TestSIPMatchesTshark(t *testing.T) {
	dir := capturesDir(t)
	tshark := testtool.Need(t, "tshark")
	files := allCaptures(t, dir)
	// The shared set holds 34 captures (INDEX.md); a folder that lost
	// them must not pass by comparing nothing.
	if len(files) < 30 {
		t.Fatalf("only %d captures under %s", len(files), dir)
	}
	compared := 0
	t.Cleanup(func() {
		if !t.Failed() && compared < 100 {
			t.Errorf("only %d SIP messages compared with tshark", compared)
		}
	})
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			rep, err := Files(context.Background(), []string{file}, Options{Config: config.Default()})
			if err != nil {
				t.Fatalf("analyze: %v", err)
			}
			ours := map[string][]string{}
			for _, c := range rep.CallRecords {
				if c.Truncated {
					t.Fatalf("call %s truncated; raise the bound for this test", c.CallID)
				}
				var labels []string
				for _, m := range c.Messages {
					if m.IsRequest {
						labels = append(labels, m.Method)
					} else {
						labels = append(labels, strconv.Itoa(m.StatusCode))
					}
				}
				if len(labels) != c.MessageCount {
					t.Errorf("call %s: %d messages kept but MessageCount %d", c.CallID, len(labels), c.MessageCount)
				}
				// A Call-ID seen again after its call was let go is a
				// second call: tshark counts by Call-ID.
				ours[c.CallID] = append(ours[c.CallID], labels...)
				sort.Strings(ours[c.CallID])
			}
			theirs := tsharkSIP(t, tshark, file)
			if d, ok := deliberate[name]; ok {
				t.Logf("deliberate difference: %s", d.why)
				if rep.Stats.SIPMessages != d.wantSIP || rep.Stats.SIPErrors != 0 {
					t.Errorf("SIP messages %d (errors %d), want %d and none refused", rep.Stats.SIPMessages, rep.Stats.SIPErrors, d.wantSIP)
				}
				// tshark must not see SIP that we miss.
				for id, want := range theirs {
					if strings.Join(ours[id], ",") != strings.Join(want, ",") {
						t.Errorf("Call-ID %q: sbcwatch %v, tshark %v", id, ours[id], want)
					}
				}
				if len(ours) == 0 {
					t.Errorf("expected sbcwatch to find SIP in %s", name)
				}
				return
			}
			for id, want := range theirs {
				compared += len(want)
				if got := ours[id]; strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("Call-ID %q: sbcwatch %v, tshark %v", id, got, want)
				}
			}
			for id, got := range ours {
				if _, ok := theirs[id]; !ok {
					t.Errorf("Call-ID %q seen by sbcwatch (%v) but not by tshark", id, got)
				}
			}
		})
	}
}

func nonEmpty(in []string) []string {
	var out []string
	for _, s := range in {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
