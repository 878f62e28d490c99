package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseDSN(t *testing.T) {
	def := dsnDefaults{User: "envuser", Password: "envpass"}
	tests := []struct {
		name string
		dsn  string
		want endpoint
	}{
		{
			name: "script example",
			dsn:  "dbi:mysql:database=db1;table=tbl1;user=foo;password=XXX",
			want: endpoint{Driver: "mysql", Table: "tbl1", Database: "db1", Host: "127.0.0.1", Port: 3306, User: "foo", Password: "XXX"},
		},
		{
			name: "all keys",
			dsn:  "dbi:mysql:database=db1;table=tbl1;host=10.0.0.7;port=3307;user=foo;password=XXX",
			want: endpoint{Driver: "mysql", Table: "tbl1", Database: "db1", Host: "10.0.0.7", Port: 3307, User: "foo", Password: "XXX"},
		},
		{
			name: "any order, table first",
			dsn:  "dbi:mysql:table=t;password=p;port=13306;host=h;user=u;database=d",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "h", Port: 13306, User: "u", Password: "p"},
		},
		{
			name: "MariaDB and upper-case DBI",
			dsn:  "DBI:MariaDB:database=d;table=t",
			want: endpoint{Driver: "MariaDB", Table: "t", Database: "d", Host: "127.0.0.1", Port: 3306, User: "envuser", Password: "envpass"},
		},
		{
			name: "synonyms",
			dsn:  "dbi:mysql:dbname=d;hostname=h;table=t",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "h", Port: 3306, User: "envuser", Password: "envpass"},
		},
		{
			name: "db synonym",
			dsn:  "dbi:mysql:db=d;table=t",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "127.0.0.1", Port: 3306, User: "envuser", Password: "envpass"},
		},
		{
			name: "positional database host port",
			dsn:  "dbi:mysql:d:h:3310;table=t",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "h", Port: 3310, User: "envuser", Password: "envpass"},
		},
		{
			name: "colon separators",
			dsn:  "dbi:mysql:database=d:host=h:port=3311;table=t",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "h", Port: 3311, User: "envuser", Password: "envpass"},
		},
		{
			name: "ignored keys",
			dsn:  "dbi:mysql:database=d;mysql_socket=/tmp/s;table=t;mysql_ssl=1;bogus=1",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "127.0.0.1", Port: 3306, User: "envuser", Password: "envpass",
				Ignored: []string{"mysql_socket", "mysql_ssl", "bogus"}},
		},
		{
			name: "DBI attributes",
			dsn:  "dbi:mysql(RaiseError=>1):database=d;table=t",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "127.0.0.1", Port: 3306, User: "envuser", Password: "envpass",
				Ignored: []string{"(RaiseError=>1)"}},
		},
		{
			name: "IPv6 host",
			dsn:  "dbi:mysql:database=d;host=[::1];port=3307;table=t",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "::1", Port: 3307, User: "envuser", Password: "envpass"},
		},
		{
			name: "no database, qualified table",
			dsn:  "dbi:mysql:table=db9.t",
			want: endpoint{Driver: "mysql", Table: "db9.t", Host: "127.0.0.1", Port: 3306, User: "envuser", Password: "envpass"},
		},
		{
			name: "empty user and password are kept",
			dsn:  "dbi:mysql:database=d;table=t;user=;password=",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "127.0.0.1", Port: 3306},
		},
		{
			name: "empty components",
			dsn:  "dbi:mysql:;database=d;;table=t;",
			want: endpoint{Driver: "mysql", Table: "t", Database: "d", Host: "127.0.0.1", Port: 3306, User: "envuser", Password: "envpass"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDSN(tc.dsn, def)
			if err != nil {
				t.Fatalf("parseDSN(%q): %v", tc.dsn, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseDSN(%q)\n got  %+v\n want %+v", tc.dsn, got, tc.want)
			}
		})
	}
}

func TestParseDSNErrors(t *testing.T) {
	tests := []struct {
		dsn, want string
	}{
		{"dbi:mysql:database=db1;user=foo", "table name missing in operand"},
		{"dbi:mysql:database=db1;table=", "table name missing in operand"},
		{"dbi:mysql:", "table name missing in operand"},
		{"mysql:database=d;table=t", "not a DBI data source name"},
		{"dbi:mysql", "not a DBI data source name"},
		{"root@tcp(127.0.0.1:3306)/test", "not a DBI data source name"},
		{"dbi:Pg:database=d;table=t", `unsupported DBI driver "Pg"`},
		{"dbi:MYSQL:database=d;table=t", `unsupported DBI driver "MYSQL"`},
		{"dbi:mysql:database=d;table=t;port=x", `bad port "x"`},
		{"dbi:mysql:database=d;table=t;port=70000", `bad port "70000"`},
		{"dbi:mysql:database=d;table=t;port=0", `bad port "0"`},
	}
	for _, tc := range tests {
		_, err := parseDSN(tc.dsn, dsnDefaults{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseDSN(%q) = %v, want an error containing %q", tc.dsn, err, tc.want)
		}
	}
	if _, err := parseDSN("dbi:mysql:database=d", dsnDefaults{}); !errors.Is(err, errNoTable) {
		t.Errorf("missing table: %v is not errNoTable", err)
	}
	// The password never shows in an error.
	_, err := parseDSN("dbi:mysql:database=d;password=s3cret;user=u", dsnDefaults{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %v shows the password", err)
	}
}

func TestEndpointConfig(t *testing.T) {
	ep, err := parseDSN("dbi:mysql:database=d;table=t;host=[::1];port=3307;user=u;password=p", dsnDefaults{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ep.config(0, 0, 0, nil)
	if cfg.Addr != "[::1]:3307" || cfg.User != "u" || cfg.Passwd != "p" || cfg.DBName != "d" || cfg.Net != "tcp" || !cfg.InterpolateParams {
		t.Errorf("config: %+v", cfg)
	}
	if s := ep.String(); strings.Contains(s, "p@") || s != "u@[::1]:3307/d table=t" {
		t.Errorf("String() = %q", s)
	}
}

func TestDefaultsFromEnv(t *testing.T) {
	t.Setenv("DBI_USER", "alice")
	t.Setenv("DBI_PASS", "pw")
	if d := defaultsFromEnv(); d != (dsnDefaults{User: "alice", Password: "pw"}) {
		t.Errorf("with DBI_USER/DBI_PASS: %+v", d)
	}
	t.Setenv("DBI_USER", "")
	t.Setenv("DBI_PASS", "")
	if d := defaultsFromEnv(); d.User == "" || d.User != loginName() || d.Password != "" {
		t.Errorf("without DBI_USER/DBI_PASS: %+v (login name %q)", d, loginName())
	}
}
