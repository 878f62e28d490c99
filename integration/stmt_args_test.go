package integration

import (
	"encoding/binary"
	"testing"
)

// TestStmtExecuteWrongArguments: a COM_STMT_EXECUTE whose parameter block
// does not match the statement (too few parameters, values missing or cut
// short, no parameter block, the packet cut before its flags) gets MySQL's
// ERROR 1210 (HY000) "Incorrect arguments to mysqld_stmt_execute", not
// 1105; nothing is stored, and the connection stays usable.
func TestStmtExecuteWrongArguments(t *testing.T) {
	s := startServer(t)
	r := rawLogin(t, s)
	if res := r.query("CREATE TABLE sa (a BIGINT NOT NULL, b BIGINT) ENGINE=queue"); res.err != nil {
		t.Fatal(res.err)
	}
	id, params := r.prepare("INSERT INTO sa (a, b) VALUES (?, ?)")
	if params != 2 {
		t.Fatalf("prepared statement has %d parameters, want 2", params)
	}
	long := func(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
	const longType = 0x08 // MYSQL_TYPE_LONGLONG
	good := execute(id, []byte{0}, []byte{longType, 0, longType, 0}, append(long(1), long(2)...))
	// The right parameters work (and prove the encoding below).
	r.send(good)
	if res := r.mustResult(); !res.ok {
		t.Fatalf("execute with two parameters: %+v", res)
	}

	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"no parameter block", execute(id, nil, nil, nil)},
		{"one parameter of two (8-byte value)", execute(id, []byte{0}, []byte{longType, 0}, long(7))},
		{"one parameter of two (1-byte value)", execute(id, []byte{0}, []byte{0x01, 0}, []byte{7})},
		{"types of two, no values", execute(id, []byte{0}, []byte{longType, 0, longType, 0}, nil)},
		{"second value cut short", execute(id, []byte{0}, []byte{longType, 0, longType, 0}, append(long(7), 1, 2, 3))},
		{"NULL bitmap only", good[:1+4+1+4+1]},
		{"cut after the statement id", good[:1+4]},
		{"cut in the iteration count", good[:1+4+1+2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.send(tc.pkt)
			res := r.mustResult()
			if res.err == nil || res.err.code != 1210 || res.err.state != "HY000" || res.err.msg != "Incorrect arguments to mysqld_stmt_execute" {
				t.Errorf("got %+v (err %v); want ERROR 1210 (HY000): Incorrect arguments to mysqld_stmt_execute", res, res.err)
			}
			r.alive(tc.name)
		})
	}
	// The statement still works after them, and only the good executions
	// stored a row.
	r.send(good)
	if res := r.mustResult(); !res.ok {
		t.Fatalf("execute with two parameters after the bad ones: %+v", res)
	}
	if got := r.value("SELECT COUNT(*) FROM sa"); got != "2" {
		t.Errorf("%s rows stored; want 2", got)
	}
}
