package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sbcwatch/sbcwatch/internal/suggest"
)

// keyPaths maps each section type of the configuration ("config.Serve")
// to its YAML path ("serve") and known keys; built from the struct tags
// of Config, so it cannot drift from them.
type keyPaths struct {
	path map[string]string
	keys map[string][]string
}

func knownKeys() keyPaths {
	kp := keyPaths{path: map[string]string{}, keys: map[string][]string{}}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		name := t.String()
		if _, seen := kp.path[name]; seen {
			return
		}
		kp.path[name] = path
		for i := range t.NumField() {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			kp.keys[name] = append(kp.keys[name], key)
			p := key
			if path != "" {
				p = path + "." + key
			}
			walk(f.Type, p)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return kp
}

var (
	notFoundRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// explainYAML rewrites a decoding error of b for a person: an unknown
// key gets the nearest known one (or the section it belongs in), a tab
// in the indentation gets its own line (the YAML library reports the
// line before), and several problems become one line each joined by
// "; ".
func explainYAML(b []byte, err error) error {
	if line := tabIndentLine(b); line > 0 {
		return &yamlError{msg: fmt.Sprintf("line %d: a tab in the indentation; YAML indents with spaces", line), err: err}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		kp := knownKeys()
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, explainField(kp, e))
		}
		return &yamlError{msg: strings.Join(msgs, "; "), err: err}
	}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		return &yamlError{msg: "line " + m[1] + ": " + m[2], err: err}
	}
	return err
}

// yamlError is a decoding error said plainly; it wraps the library's.
type yamlError struct {
	msg string
	err error
}

func (e *yamlError) Error() string { return e.msg }
func (e *yamlError) Unwrap() error { return e.err }

// explainField rewrites "line N: field K not found in type config.T".
func explainField(kp keyPaths, e string) string {
	m := notFoundRE.FindStringSubmatch(e)
	if m == nil {
		return e
	}
	line, key, typ := m[1], m[2], m[3]
	where := "at the top level"
	if p := kp.path[typ]; p != "" {
		where = "under " + p
	}
	msg := fmt.Sprintf("line %s: unknown key %q %s", line, key, where)
	if near := nearest(key, kp.keys[typ]); near != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", near)
	}
	// A known key in the wrong section.
	var homes []string
	for t, keys := range kp.keys {
		for _, k := range keys {
			if k == key && t != typ {
				home := kp.path[t]
				if home == "" {
					home = "the top level"
				}
				homes = append(homes, home)
			}
		}
	}
	if len(homes) > 0 {
		sort.Strings(homes)
		return msg + fmt.Sprintf(" (it belongs under %s)", strings.Join(homes, " or "))
	}
	known := append([]string(nil), kp.keys[typ]...)
	sort.Strings(known)
	return msg + fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
}

// tabIndentLine is the first line (1-based) whose indentation holds a
// tab, or 0.
func tabIndentLine(b []byte) int {
	for i, l := range bytes.Split(b, []byte("\n")) {
		indent := l[:len(l)-len(bytes.TrimLeft(l, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 && len(bytes.TrimSpace(l)) > 0 && !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			return i + 1
		}
	}
	return 0
}

// nearest is the key closest to s by edit distance, when close enough
// (a key that s is a prefix of, or that is a prefix of s, counts as close).
func nearest(s string, keys []string) string {
	return suggest.Nearest(s, keys, func(s, k string) bool {
		return strings.HasPrefix(k, s) || strings.HasPrefix(s, k)
	})
}
