package valve

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLimits checks Settings.limits with destination overrides.
func TestLimits(t *testing.T) {
	base := Settings{
		MaxItems: 2, Interval: 1,
		Destinations: []Destination{
			{Name: "more", MaxItems: 5},
			{Name: "faster", Interval: 0.5},
			{Name: "strict", StrictInterval: true},
			{Name: "both", MaxItems: 3, Interval: 2.5},
			{Name: "empty"},
		},
	}
	strict := Settings{MaxItems: 5, Interval: 2, StrictInterval: true,
		Destinations: []Destination{{Name: "more", MaxItems: 4}, {Name: "slower", Interval: 3}}}
	tests := []struct {
		name     string
		s        Settings
		dest     string
		wantMax  int
		wantIntv time.Duration
	}{
		{"no override", base, "other", 2, time.Second},
		{"empty destination name", base, "", 2, time.Second},
		{"max_items override", base, "more", 5, time.Second},
		{"interval override", base, "faster", 2, 500 * time.Millisecond},
		{"strict override: one per window", base, "strict", 1, time.Second},
		{"both overridden", base, "both", 3, 2500 * time.Millisecond},
		{"an override without limits keeps the valve's", base, "empty", 2, time.Second},
		{"names are exact", base, "More", 2, time.Second},
		{"strict valve", strict, "x", 1, 2 * time.Second},
		{"strict valve: max_items override still strict", strict, "more", 1, 2 * time.Second},
		{"strict valve: interval override", strict, "slower", 1, 3 * time.Second},
		{"max_items 0: one per window", Settings{MaxItems: 0, Interval: 4}, "x", 1, 4 * time.Second},
		{"fractional interval", Settings{MaxItems: 7, Interval: 0.25}, "x", 7, 250 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotMax, gotIntv := tc.s.limits(tc.dest)
			if gotMax != tc.wantMax || gotIntv != tc.wantIntv {
				t.Errorf("limits(%q) = %d, %v; want %d, %v", tc.dest, gotMax, gotIntv, tc.wantMax, tc.wantIntv)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	if d.Name != "mvalve" || d.Database != "test" || d.TimedTable != "q_timed" || d.StatslogTable != "q_statslog" ||
		!slices.Equal(d.EmergencyTables, []string{"q_emerg"}) || !slices.Equal(d.NormalTables, []string{"q_incoming"}) ||
		d.MaxItems != 10 || d.Interval != 20 || d.StrictInterval || d.DropOnEmergency == nil || !*d.DropOnEmergency ||
		d.Release != "prompt" || len(d.Destinations) != 0 {
		t.Errorf("Defaults() = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Defaults() do not validate: %v", err)
	}
	*d.DropOnEmergency = false
	if !*Defaults().DropOnEmergency {
		t.Error("Defaults() share their DropOnEmergency flag between calls")
	}
}

// TestLoadConfig checks parsing, defaults and rejections of the TOML file.
func TestLoadConfig(t *testing.T) {
	f, tr := false, true
	def := Defaults()
	withDefaults := func(mod func(*Settings)) Settings {
		s := Defaults()
		mod(&s)
		return s
	}
	tests := []struct {
		name    string
		toml    string
		want    []Settings
		wantErr string // substring of the error
	}{
		{name: "defaults", toml: "[[valve]]\n", want: []Settings{def}},
		{name: "rate only", toml: "[[valve]]\nmax_items = 2\ninterval = 1.0\n",
			want: []Settings{withDefaults(func(s *Settings) { s.MaxItems, s.Interval = 2, 1 })}},
		{name: "integer interval", toml: "[[valve]]\ninterval = 3\n",
			want: []Settings{withDefaults(func(s *Settings) { s.Interval = 3 })}},
		{name: "everything", toml: `
[[valve]]
name = "orders"
database = "shop"
emergency_tables = ["e1", "e2"]
timed_table = "t"
normal_tables = ["n1", "n2"]
statslog_table = "-"
max_items = 4
interval = 0.5
strict_interval = false
drop_on_emergency = false
release = "prompt"

[[valve.destination]]
name = "slow"
max_items = 1
interval = 10.0

[[valve.destination]]
name = "strict"
strict_interval = true
`, want: []Settings{{
			Name: "orders", Database: "shop", EmergencyTables: []string{"e1", "e2"}, TimedTable: "t",
			NormalTables: []string{"n1", "n2"}, StatslogTable: "-", MaxItems: 4, Interval: 0.5,
			DropOnEmergency: &f, Release: "prompt",
			Destinations: []Destination{{Name: "slow", MaxItems: 1, Interval: 10}, {Name: "strict", StrictInterval: true}},
		}}},
		{name: "strict keeps max_items 0", toml: "[[valve]]\nstrict_interval = true\n",
			want: []Settings{withDefaults(func(s *Settings) { s.StrictInterval, s.MaxItems = true, 0 })}},
		{name: "drop_on_emergency true", toml: "[[valve]]\ndrop_on_emergency = true\n",
			want: []Settings{withDefaults(func(s *Settings) { s.DropOnEmergency = &tr })}},
		{name: "two valves", toml: "[[valve]]\nname = \"a\"\nmax_items = 1\n[[valve]]\nname = \"b\"\nnormal_tables = [\"other\"]\n",
			want: []Settings{
				withDefaults(func(s *Settings) { s.Name, s.MaxItems = "a", 1 }),
				withDefaults(func(s *Settings) { s.Name, s.NormalTables = "b", []string{"other"} }),
			}},
		{name: "unknown key", toml: "[[valve]]\nmax_item = 2\n", wantErr: "unknown setting valve.max_item"},
		{name: "unknown key in a destination", toml: "[[valve]]\n[[valve.destination]]\nname = \"x\"\nmaxitems = 1\n", wantErr: "unknown setting valve.destination.maxitems"},
		{name: "unknown section", toml: "[[valve]]\n[server]\nport = 1\n", wantErr: "unknown setting server"},
		{name: "bad release mode", toml: "[[valve]]\nrelease = \"eager\"\n", wantErr: "release must be prompt"},
		{name: "release mode is case-sensitive", toml: "[[valve]]\nrelease = \"Prompt\"\n", wantErr: "release must be prompt"},
		{name: "faithful is refused", toml: "[[valve]]\nrelease = \"faithful\"\n", wantErr: "release = \"faithful\" is no longer supported"},
		{name: "negative interval", toml: "[[valve]]\ninterval = -1.0\n", wantErr: "interval must be positive"},
		{name: "negative max_items", toml: "[[valve]]\nmax_items = -1\n", wantErr: "max_items must not be negative"},
		{name: "no normal tables", toml: "[[valve]]\nnormal_tables = []\n", wantErr: "no normal_tables"},
		{name: "negative destination limits", toml: "[[valve]]\n[[valve.destination]]\nname = \"x\"\ninterval = -2.0\n", wantErr: "negative limits"},
		{name: "no valve", toml: "# nothing\n", wantErr: "no [[valve]]"},
		{name: "wrong type", toml: "[[valve]]\nmax_items = \"two\"\n", wantErr: "valve config"},
		{name: "syntax error", toml: "[[valve]\n", wantErr: "valve config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "valve.toml")
			if err := os.WriteFile(path, []byte(tc.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadConfig: %v, want an error containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if !reflect.DeepEqual(c.Valves, tc.want) {
				t.Errorf("LoadConfig:\n got  %+v\n want %+v", c.Valves, tc.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig of a missing file: %v, want ErrNotExist", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(nil, nil, Settings{Release: "later"}, nil); err == nil || !strings.Contains(err.Error(), "release") {
		t.Errorf("New with a bad release mode: %v", err)
	}
	v, err := New(nil, nil, Settings{Name: "x"}, nil)
	if err != nil || v.Name() != "x" || v.cfg.MaxItems != 10 || v.cfg.TimedTable != "q_timed" {
		t.Errorf("New fills defaults: %v, %+v", err, v)
	}
}
