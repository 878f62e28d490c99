package main

// One configuration for every flag: a TOML file (--config), Q4MPROXY_*
// environment variables and the command line, merged generically from the
// flag set, so a flag added to ParseFlags is configurable everywhere at once.

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/q4mproxy/q4mproxy/valve"
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "Q4MPROXY_"

// redacted is what --print-config shows in place of a secret.
const redacted = "<redacted>"

// commandFlags act on the command itself: they are not settings, so the
// file does not take them (--config is also read from Q4MPROXY_CONFIG).
var commandFlags = map[string]bool{"config": true, "print-config": true, "version": true, "help": true}

// envName is the environment variable of flag name: Q4MPROXY_DATA_DIR for
// data-dir.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// fileKey is the key of flag name in the file: data_dir for data-dir (the
// file also takes data-dir).
func fileKey(name string) string { return strings.ReplaceAll(name, "-", "_") }

// secret reports whether the flag holds a secret that --print-config hides.
func secret(name string) bool {
	for _, s := range []string{"password", "secret", "token"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// fileValue is one setting read from the file.
type fileValue struct {
	value string // as the flag's Set takes it
	line  int
}

// configFile is a parsed configuration file.
type configFile struct {
	path     string
	settings map[string]fileValue // by flag name
	valves   []valve.Settings     // its [[valve]] sections, completed
}

// applyConfig sets every flag of fs that the command line did not set from
// its environment variable or, failing that, from the file: flags >
// environment > file > defaults. Empty environment variables count as
// unset.
func (m *Main) applyConfig(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["config"] {
		if v := os.Getenv(envName("config")); v != "" {
			m.ConfigFile = v
		}
	}
	m.configFile = nil
	if m.ConfigFile != "" {
		cf, err := loadConfigFile(m.ConfigFile, fs)
		if err != nil {
			return err
		}
		m.configFile = cf
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || commandFlags[f.Name] {
			return
		}
		if v := os.Getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: invalid value %q: %w", envName(f.Name), v, e)
			}
			return
		}
		if m.configFile == nil {
			return
		}
		if fv, ok := m.configFile.settings[f.Name]; ok {
			where := fmt.Sprintf("%s:%d: %s", m.configFile.path, fv.line, fileKey(f.Name))
			if secret(f.Name) && fv.value == redacted {
				err = fmt.Errorf("%s is %q, which --print-config shows in place of the secret: write the real one, or set %s", where, redacted, envName(f.Name))
				return
			}
			if e := fs.Set(f.Name, fv.value); e != nil {
				err = fmt.Errorf("%s: invalid value %q: %w", where, fv.value, e)
			}
		}
	})
	return err
}

// loadConfigFile reads a TOML file: one key per flag of fs (data_dir or
// data-dir), and the valves' [[valve]] sections. An unknown key is an error
// naming it and its line.
func loadConfigFile(path string, fs *flag.FlagSet) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := string(b)
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cf := &configFile{path: path, settings: map[string]fileValue{}}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		line := keyLine(text, toml.Key{k})
		if k == "valve" {
			if _, isBool := v.(bool); !isBool { // [[valve]] sections; valve = true is --valve
				if err := cf.decodeValves(text); err != nil {
					return nil, err
				}
				continue
			}
		}
		name := strings.ReplaceAll(k, "_", "-")
		f := fs.Lookup(name)
		if f == nil || commandFlags[name] {
			return nil, fmt.Errorf("%s:%d: unknown setting %q", path, line, k)
		}
		if prev, dup := cf.settings[name]; dup {
			return nil, fmt.Errorf("%s:%d: %s is already set on line %d", path, line, k, prev.line)
		}
		s, err := settingString(v)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, line, k, err)
		}
		cf.settings[name] = fileValue{value: s, line: line}
	}
	return cf, nil
}

// settingString turns a TOML value into the text a flag's Set takes.
func settingString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	}
	return "", fmt.Errorf("want a string, a number or a boolean, not %T", v)
}

// decodeValves decodes the [[valve]] sections, strictly.
func (cf *configFile) decodeValves(text string) error {
	var c struct {
		Valves []valve.Settings `toml:"valve"`
	}
	md, err := toml.Decode(text, &c)
	if err != nil {
		return fmt.Errorf("%s: %w", cf.path, err)
	}
	for _, k := range md.Undecoded() {
		if len(k) > 1 && k[0] == "valve" {
			return fmt.Errorf("%s:%d: unknown setting %s", cf.path, keyLine(text, k), k)
		}
	}
	vc := valve.Config{Valves: c.Valves}
	if err := vc.Complete(); err != nil {
		return fmt.Errorf("%s: %w", cf.path, err)
	}
	cf.valves = vc.Valves
	return nil
}

// keyLine finds the line (from 1) where key is set or its table opens, or
// 0. BurntSushi/toml keeps key positions to itself; the file is scanned
// line by line, following [table] and [[array]] headers.
func keyLine(text string, key toml.Key) int {
	want := strings.Join(key, ".")
	table := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			h := strings.Trim(line, "[] \t")
			if j := strings.Index(h, "#"); j >= 0 {
				h = strings.Trim(h[:j], "[] \t")
			}
			table = normKey(h)
			if table == want {
				return i + 1
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		full := normKey(k)
		if table != "" {
			full = table + "." + full
		}
		if full == want {
			return i + 1
		}
	}
	return 0
}

// normKey writes a (possibly dotted, quoted) TOML key as dotted parts.
func normKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// writeConfig writes the effective settings of fs as a TOML file that
// --config takes: every setting with its flag's usage as a comment,
// secrets as "<redacted>", then the valves of the file.
func (m *Main) writeConfig(w io.Writer, fs *flag.FlagSet) error {
	var b strings.Builder
	b.WriteString("# q4mproxy " + Version + ": effective settings (--print-config)\n")
	fs.VisitAll(func(f *flag.Flag) {
		if commandFlags[f.Name] {
			return
		}
		key := fileKey(f.Name)
		if f.Name == "valve" && m.configFile != nil && len(m.configFile.valves) > 0 {
			// valve = ... and [[valve]] cannot share a file.
			fmt.Fprintf(&b, "\n# --valve (%s): %s; the [[valve]] sections below are the file's\n", key, f.Value.String())
			return
		}
		_, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "\n# --%s: %s\n", f.Name, oneLine(usage))
		fmt.Fprintf(&b, "%s = %s\n", key, tomlValue(f))
	})
	if m.configFile != nil && len(m.configFile.valves) > 0 {
		b.WriteString("\n")
		if err := toml.NewEncoder(&b).Encode(valve.Config{Valves: m.configFile.valves}); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tomlValue is f's value in TOML: typed when the flag is, secrets hidden.
func tomlValue(f *flag.Flag) string {
	if secret(f.Name) {
		if f.Value.String() == "" {
			return `""`
		}
		return tomlString(redacted)
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch v := g.Get().(type) {
		case bool:
			return strconv.FormatBool(v)
		case int, int64, uint, uint64:
			return fmt.Sprint(v)
		case float64:
			s := strconv.FormatFloat(v, 'g', -1, 64)
			if !strings.ContainsAny(s, ".eE") {
				s += ".0"
			}
			return s
		case time.Duration:
			return tomlString(v.String())
		}
	}
	return tomlString(f.Value.String())
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
