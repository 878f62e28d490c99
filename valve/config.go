package valve

import (
	"fmt"
	"os"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the valve configuration file: one or more valves.
type Config struct {
	Valves []Settings `toml:"valve"`
}

// Settings configure one valve.
type Settings struct {
	Name            string   `toml:"name"`
	Database        string   `toml:"database"`
	EmergencyTables []string `toml:"emergency_tables"`
	TimedTable      string   `toml:"timed_table"`
	NormalTables    []string `toml:"normal_tables"`
	// StatslogTable receives 'throttle' rows as Mvalve's Reader writes
	// them; "-" turns the log off. A missing table is skipped.
	StatslogTable string `toml:"statslog_table"`
	// LogDequeue also writes a 'dequeue' row when a connection consumes a
	// message from the timed table (for consumers that do not log, unlike
	// Mvalve's Reader with a logger, which logs its own).
	LogDequeue      bool    `toml:"log_dequeue"`
	MaxItems        int     `toml:"max_items"`
	Interval        float64 `toml:"interval"` // seconds
	StrictInterval  bool    `toml:"strict_interval"`
	DropOnEmergency *bool   `toml:"drop_on_emergency"`
	// Release is "prompt", the only mode: a message enters the timed table
	// (with ready = 0) when its destination's readers may take it. The
	// "faithful" mode of earlier versions (rows entered the timed table at
	// once with ready = their slot) is refused: a reader that came late
	// took every row whose slot had passed at once.
	Release      string        `toml:"release"`
	Destinations []Destination `toml:"destination"`
}

// Destination overrides the limits for one destination.
type Destination struct {
	Name           string  `toml:"name"`
	MaxItems       int     `toml:"max_items"`
	Interval       float64 `toml:"interval"`
	StrictInterval bool    `toml:"strict_interval"`
}

// Defaults are Mvalve's table names, and the throttle of its basic test
// (10 messages per 20 s).
func Defaults() Settings {
	t := true
	return Settings{
		Name: "mvalve", Database: "test",
		EmergencyTables: []string{"q_emerg"}, TimedTable: "q_timed",
		NormalTables: []string{"q_incoming"}, StatslogTable: "q_statslog",
		MaxItems: 10, Interval: 20, DropOnEmergency: &t, Release: "prompt",
	}
}

// LoadConfig reads a TOML file. Unset settings take Defaults().
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return nil, fmt.Errorf("valve config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("valve config %s: unknown setting %s", path, und[0])
	}
	if len(c.Valves) == 0 {
		return nil, fmt.Errorf("valve config %s: no [[valve]]", path)
	}
	if err := c.Complete(); err != nil {
		return nil, fmt.Errorf("valve config %s: %w", path, err)
	}
	return &c, nil
}

// Complete gives unset settings their Defaults() and validates every valve.
// It is for callers that decode the [[valve]] sections themselves (the
// server's configuration file holds them beside its other settings).
func (c *Config) Complete() error {
	for i := range c.Valves {
		c.Valves[i].fill()
		if err := c.Valves[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Settings) fill() {
	d := Defaults()
	if s.Name == "" {
		s.Name = d.Name
	}
	if s.Database == "" {
		s.Database = d.Database
	}
	if s.EmergencyTables == nil {
		s.EmergencyTables = d.EmergencyTables
	}
	if s.TimedTable == "" {
		s.TimedTable = d.TimedTable
	}
	if s.NormalTables == nil {
		s.NormalTables = d.NormalTables
	}
	if s.StatslogTable == "" {
		s.StatslogTable = d.StatslogTable
	}
	if s.MaxItems == 0 && !s.StrictInterval {
		s.MaxItems = d.MaxItems
	}
	if s.Interval == 0 {
		s.Interval = d.Interval
	}
	if s.DropOnEmergency == nil {
		s.DropOnEmergency = d.DropOnEmergency
	}
	if s.Release == "" {
		s.Release = d.Release
	}
}

// Validate checks the settings.
func (s *Settings) Validate() error {
	switch {
	case s.Interval <= 0:
		return fmt.Errorf("valve %s: interval must be positive", s.Name)
	case s.MaxItems < 0:
		return fmt.Errorf("valve %s: max_items must not be negative", s.Name)
	case len(s.NormalTables) == 0:
		return fmt.Errorf("valve %s: no normal_tables", s.Name)
	case s.Release == "faithful":
		return fmt.Errorf("valve %s: release = \"faithful\" is no longer supported (rows entered the timed table ahead of their time, so a late reader took them in a burst); remove it", s.Name)
	case s.Release != "prompt":
		return fmt.Errorf("valve %s: release must be prompt", s.Name)
	}
	for _, d := range s.Destinations {
		if d.Interval < 0 || d.MaxItems < 0 {
			return fmt.Errorf("valve %s: destination %q: negative limits", s.Name, d.Name)
		}
	}
	return nil
}

// limits returns the throttle for destination d: at most max deliveries in
// any window of interval (strict_interval: one).
func (s *Settings) limits(d string) (int, time.Duration) {
	maxItems, interval, strict := s.MaxItems, s.Interval, s.StrictInterval
	for _, o := range s.Destinations {
		if o.Name == d {
			if o.MaxItems > 0 || o.StrictInterval {
				maxItems = o.MaxItems
			}
			if o.Interval > 0 {
				interval = o.Interval
			}
			strict = strict || o.StrictInterval
		}
	}
	if strict || maxItems < 1 {
		maxItems = 1 // Data::Valve: one push per window when strict or max_items = 0
	}
	return maxItems, time.Duration(interval * float64(time.Second))
}
