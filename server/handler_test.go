package server

import (
	"strings"
	"testing"
)

func TestMayBlock(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT QUEUE_WAIT('t')": true, "select * from t where queue_wait('t')": true, "SELECT Sleep(1)": true,
		"INSERT INTO t VALUES (1, 'queue_wai')": false, "": false, "q": false, "SELECT queue_end()": false,
		"INSERT INTO t VALUES ('" + strings.Repeat("Qs", 5000) + "QUEUE_WAIT')": true,
	} {
		if got := mayBlock(q); got != want {
			t.Errorf("mayBlock(%.40q) = %v", q, got)
		}
	}
}
