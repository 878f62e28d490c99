package sqlfront

import (
	"reflect"
	"testing"
)

func TestLocalWins(t *testing.T) {
	s := newSession(t, newEngine(t))
	for q, want := range map[string]bool{
		"SHOW GLOBAL STATUS":                                true,
		"SHOW STATUS LIKE 'Com%'":                           true,
		"SELECT * FROM information_schema.GLOBAL_STATUS":    false,
		"SHOW GLOBAL VARIABLES":                             false,
		"SHOW TABLES":                                       false,
		"SELECT * FROM information_schema.TABLES":           false,
		"SELECT * FROM information_schema.GLOBAL_VARIABLES": false,
		"not sql at all":                                    false,
	} {
		if got := s.LocalWins(q); got != want {
			t.Errorf("LocalWins(%q) = %v, want %v", q, got, want)
		}
	}
}

// MergeRowsLocalFirst keeps the local row of a name both sides list,
// the upstream's rows of the others and the local ones it lacks, sorted.
func TestMergeRowsLocalFirst(t *testing.T) {
	up := [][]any{{"Handler_commit", "7"}, {"Threads_connected", "40"}, {"Uptime", "9000"}}
	local := &Result{Columns: textColumns("Variable_name", "Value"),
		Rows: [][]any{{"Queue_rows", "3"}, {"threads_connected", "2"}, {"Uptime", "12"}}}
	got := MergeRowsLocalFirst([]string{"Variable_name", "Value"}, up, local).Rows
	want := [][]any{{"Handler_commit", "7"}, {"Queue_rows", "3"}, {"threads_connected", "2"}, {"Uptime", "12"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	empty := MergeRowsLocalFirst([]string{"Variable_name", "Value"}, up, &Result{}).Rows
	if len(empty) != 3 {
		t.Errorf("without local rows: %v", empty)
	}
}
