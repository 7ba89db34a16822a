package daemon

import (
	"errors"
	"net/url"
	"strings"
)

// InstanceDSN returns dsn with the session setting sbcwatch.instance set
// to name, so that every row this process stores names it (the column
// default of migration 006 reads the setting). Both DSN forms are
// handled: a postgres:// URL gets a query parameter, a keyword/value
// string one more pair.
func InstanceDSN(dsn, name string) (string, error) {
	if name == "" {
		return dsn, nil
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("daemon: cannot parse the database URL")
		}
		q := u.Query()
		q.Set("sbcwatch.instance", name)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	v := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name)
	return dsn + " sbcwatch.instance='" + v + "'", nil
}
