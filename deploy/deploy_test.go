// Package deploy_test checks the deployment files: the top-level
// Dockerfile and docker-compose.yml and the systemd unit here, without
// pulling or building images.
package deploy_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
)

// docker-compose.yml is valid against the Compose specification's schema
// (compose-go, the loader docker compose itself uses; nothing is pulled)
// and starts Postgres with a healthcheck, then migrate once it is
// healthy, then serve with the example configuration once migrate
// succeeded, with only NET_RAW and NET_ADMIN.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"},
		cli.WithWorkingDirectory(".."), cli.WithEnv([]string{}), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		return s
	}
	pg := svc("postgres")
	if pg.HealthCheck == nil || len(pg.HealthCheck.Test) < 2 || !strings.Contains(strings.Join(pg.HealthCheck.Test, " "), "pg_isready") {
		t.Errorf("postgres has no pg_isready healthcheck: %+v", pg.HealthCheck)
	}
	mig := svc("migrate")
	if d, ok := mig.DependsOn["postgres"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("migrate must wait for a healthy postgres: %+v", mig.DependsOn)
	}
	if !slices.Equal([]string(mig.Command), []string{"migrate"}) {
		t.Errorf("migrate runs %v", mig.Command)
	}
	srv := svc("serve")
	if d, ok := srv.DependsOn["migrate"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("serve must wait for migrate to succeed: %+v", srv.DependsOn)
	}
	if len(srv.Command) == 0 || srv.Command[0] != "serve" || !slices.Contains([]string(srv.Command), "--config") {
		t.Errorf("serve runs %v", srv.Command)
	}
	var cfgSource string
	for _, v := range srv.Volumes {
		if v.Target == "/etc/sbcwatch/sbcwatch.yaml" {
			cfgSource = v.Source
		}
	}
	if cfgSource == "" {
		t.Fatalf("serve mounts no configuration: %+v", srv.Volumes)
	}
	if _, err := config.Load(cfgSource); err != nil {
		t.Errorf("the configuration serve gets does not load: %v", err)
	}
	if len(srv.Ports) == 0 {
		t.Error("serve publishes no port")
	}
	for _, s := range []types.ServiceConfig{mig, srv} {
		if s.Build == nil || s.Build.Context == "" {
			t.Errorf("%s: no build context", s.Name)
		} else if _, err := os.Stat(s.Build.Context + "/Dockerfile"); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		if !slices.Equal(s.CapDrop, []string{"ALL"}) {
			t.Errorf("%s drops %v, want ALL", s.Name, s.CapDrop)
		}
		add := slices.Clone(s.CapAdd)
		slices.Sort(add)
		if !slices.Equal(add, []string{"NET_ADMIN", "NET_RAW"}) {
			t.Errorf("%s adds %v, want only NET_RAW and NET_ADMIN", s.Name, s.CapAdd)
		}
		if s.Environment["DATABASE_URL"] == nil || !strings.Contains(*s.Environment["DATABASE_URL"], "@postgres:5432/") {
			t.Errorf("%s: DATABASE_URL does not point at the postgres service", s.Name)
		}
	}
}

// The Dockerfile builds a static binary with the Go of go.mod, runs it as
// a non-root user, and grants the binary only cap_net_raw and
// cap_net_admin.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	var stages, users, runs []string
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(string(df), "\\\n", " ")))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "FROM "):
			stages = append(stages, l)
			users = append(users, "")
		case strings.HasPrefix(l, "USER "):
			users[len(users)-1] = strings.TrimPrefix(l, "USER ")
		case strings.HasPrefix(l, "RUN "):
			runs = append(runs, l)
		}
	}
	if len(stages) != 2 {
		t.Fatalf("want a build and a runtime stage: %v", stages)
	}
	if !strings.Contains(stages[0], "golang:"+string(goVer[1])) {
		t.Errorf("build stage %q does not use Go %s of go.mod", stages[0], goVer[1])
	}
	build := strings.Join(runs, "\n")
	if !strings.Contains(build, "CGO_ENABLED=0 go build") {
		t.Error("the binary is not built with CGO_ENABLED=0")
	}
	if !strings.Contains(build, "-X main.commit=") {
		t.Error("no -ldflags commit for `sbcwatch version`")
	}
	caps := regexp.MustCompile(`setcap (\S+)`).FindAllStringSubmatch(build, -1)
	if len(caps) != 1 || caps[0][1] != "cap_net_raw,cap_net_admin=ep" {
		t.Errorf("file capabilities %v, want only cap_net_raw,cap_net_admin=ep", caps)
	}
	u := users[1]
	if u == "" || strings.HasPrefix(u, "root") || strings.HasPrefix(u, "0") {
		t.Errorf("runtime stage runs as %q, want a non-root user", u)
	}
	if !strings.Contains(string(df), `ENTRYPOINT ["/usr/local/bin/sbcwatch"]`) {
		t.Error("no sbcwatch entrypoint")
	}
}

// systemd-analyze verify accepts the unit without a word, the unit keeps
// only CAP_NET_RAW and CAP_NET_ADMIN with the file system read-only, and
// systemd-analyze security rates its exposure OK.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	sa := testtool.Need(t, "systemd-analyze")
	unit, err := os.ReadFile("systemd/sbcwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN\n", "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN\n",
		"ProtectSystem=strict\n", "NoNewPrivileges=yes\n", "DynamicUser=yes\n", "PrivateDevices=yes\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// verify checks that ExecStart's binary exists: point it at one.
	dir := t.TempDir()
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	path := dir + "/sbcwatch.service"
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/sbcwatch", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for sbcwatch.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level:\n%s", out)
	}
	if v, _ := strconv.ParseFloat(string(m[1]), 64); v > 2.5 {
		t.Errorf("exposure %v, want at most 2.5:\n%s", v, out)
	}
}
